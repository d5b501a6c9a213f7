/**
 * Recorded flows (ObservedFlow) in words for the terminal, for `flows` and `plan`: who (the app
 * or apps, the network or the address, with the host), to what (app:portname or app:port, with
 * the host), and what decided. Every string from a controller or a saved file is untrusted and
 * goes through `printable` (control characters and bidirectional overrides escaped).
 */
import type { ObservedFlow } from '../flows/observed-flow.js';
import { printable } from './controller-client.js';
import { table } from './commands/status.js';

export const FLOW_TABLE_HEAD = ['LAST SEEN', 'VERDICT', 'SOURCE', 'DESTINATION', 'PROTO', 'CONNS', 'DECIDED BY'] as const;

/** The source: "app on host", "apps on host", "address (network)" or the address. */
export function flowSourceText(f: ObservedFlow): string {
  const s = f.source;
  const on = s.hostId !== undefined && s.hostId !== '' ? ` on ${s.hostId}` : '';
  if (s.kind === 'app') return printable(`${s.apps[0] ?? '?'}${on || ` on ${f.reportedBy}`}`);
  if (s.kind === 'host') return printable(s.apps.length > 0 ? `${s.apps.join(',')}${on}` : `${s.address}${on}`);
  if (s.kind === 'network') return printable(`${s.address} (${s.networks.join(',')})`);
  return printable(s.address);
}

/** The destination: "app:portname on host" per owner, or "host:port (unmanaged)". */
export function flowDestinationText(f: ObservedFlow): string {
  const d = f.destination;
  const owners = d.apps.filter((a) => a.appId !== '');
  const port = d.portName ?? String(d.port);
  if (owners.length === 0) return printable(`${d.hostId}:${d.port} (unmanaged)`);
  return printable(`${owners.map((a) => `${a.appId}:${port}`).join(',')} on ${d.hostId}`);
}

export function decidedByText(d: { readonly tier: string; readonly rule?: string }): string {
  return printable(d.rule !== undefined ? `${d.rule} (${d.tier})` : d.tier);
}

/** An ISO time to the second, as UTC. */
export function seenText(iso: string): string {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : printable(iso);
}

export function flowRow(f: ObservedFlow): string[] {
  return [seenText(f.lastSeen), f.verdict, flowSourceText(f), flowDestinationText(f), f.destination.protocol, String(f.packets), decidedByText(f.decidedBy)];
}

/** The flows as a table with its header line. */
export function flowTable(flows: readonly ObservedFlow[], head = true): string {
  return `${table([...(head ? [[...FLOW_TABLE_HEAD]] : []), ...flows.map(flowRow)])}\n`;
}
