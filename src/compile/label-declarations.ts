/**
 * Tier 2 input: what developers declare with `portcullis.allow-from` on an app (all its ports) or
 * on one port definition (that port), checked against the policy's guardrails.
 *
 * A declared name is a group or network of the policy, or `any`. It is applied only when
 *   - `guardrails.sources` allows it (null = every group and network, never `any`; otherwise the
 *     name must equal a listed peer),
 *   - the app is in a `guardrails.targets` group (null = every app), and
 *   - no `guardrails.deny` entry has the app in its `to` groups and, in its `from`, the declared
 *     peer or `any`.
 * Anything else is rejected with a reason, which the compiler reports; nothing is half applied.
 */
import type { App } from '../inventory/cluster-state.js';
import { ALLOW_FROM_LABEL, type PeerRef, type Policy } from '../policy/policy-model.js';

export type DeclarationCheck =
  | { readonly ok: true; readonly peer: PeerRef }
  | { readonly ok: false; readonly kind: 'label-unknown-name' | 'label-rejected'; readonly reason: string };

/** The names of an allow-from value: comma-separated, trimmed, empty entries dropped, unique. */
export function parseAllowFrom(value: string | undefined): string[] {
  if (value === undefined) return [];
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return [...new Set(names)];
}

function samePeer(a: PeerRef, b: PeerRef): boolean {
  if (a.kind === 'any' || b.kind === 'any') return a.kind === b.kind;
  return a.kind === b.kind && a.name === b.name;
}

function at(loc: { file: string; line: number; col: number }): string {
  return `${loc.file}:${loc.line}:${loc.col}`;
}

/** The policy's group and network names as sets. */
interface PolicyNames {
  readonly groups: ReadonlySet<string>;
  readonly networks: ReadonlySet<string>;
}

function checkDeclaration(policy: Policy, names: PolicyNames, name: string, appGroups: readonly string[]): DeclarationCheck {
  let peer: PeerRef;
  if (name === 'any') peer = { kind: 'any' };
  else if (names.groups.has(name)) peer = { kind: 'group', name };
  else if (names.networks.has(name)) peer = { kind: 'network', name };
  else return { ok: false, kind: 'label-unknown-name', reason: `'${name}' is not a group or network of the policy` };

  const g = policy.guardrails;
  if (g.sources === null ? peer.kind === 'any' : !g.sources.some((s) => samePeer(s, peer))) {
    return {
      ok: false,
      kind: 'label-rejected',
      reason:
        g.sources === null
          ? `'any' may only be declared when guardrails.sources lists it`
          : `'${name}' is not in guardrails.sources`,
    };
  }
  if (g.targets !== null && !g.targets.some((t) => appGroups.includes(t))) {
    return { ok: false, kind: 'label-rejected', reason: `the app is in no guardrails.targets group` };
  }
  for (const d of g.deny) {
    if (d.to.some((t) => appGroups.includes(t)) && d.from.some((f) => f.kind === 'any' || samePeer(f, peer))) {
      return { ok: false, kind: 'label-rejected', reason: `guardrails.deny at ${at(d.at)} forbids '${name}' for this app` };
    }
  }
  return { ok: true, peer };
}

export interface CheckedDeclarations {
  /** Applied peers per port index (app-level declarations included), in declaration order. */
  readonly appliedByPort: readonly (readonly PeerRef[])[];
  readonly problems: readonly {
    readonly kind: 'label-unknown-name' | 'label-rejected';
    readonly message: string;
  }[];
}

/**
 * The checker of every declaration of one app, for one policy (its name sets are built once here,
 * so build one checker per policy, not per app).
 */
export function declarationChecker(policy: Policy): (app: App, appGroups: readonly string[]) => CheckedDeclarations {
  const names: PolicyNames = { groups: new Set(policy.groups.map((g) => g.name)), networks: new Set(policy.networks.map((n) => n.name)) };
  return (app, appGroups) => checkAppDeclarations(policy, names, app, appGroups);
}

function checkAppDeclarations(policy: Policy, names: PolicyNames, app: App, appGroups: readonly string[]): CheckedDeclarations {
  const problems: { kind: 'label-unknown-name' | 'label-rejected'; message: string }[] = [];
  const checkAll = (value: string | undefined, where: string): PeerRef[] => {
    const applied: PeerRef[] = [];
    for (const name of parseAllowFrom(value)) {
      const c = checkDeclaration(policy, names, name, appGroups);
      if (c.ok) applied.push(c.peer);
      else problems.push({ kind: c.kind, message: `app ${app.id}: ${ALLOW_FROM_LABEL} ${where}: ${c.reason}; not applied` });
    }
    return applied;
  };
  const appLevel = checkAll(app.labels[ALLOW_FROM_LABEL], 'on the app');
  const appliedByPort = app.ports.map((port, i) => [
    ...appLevel,
    ...checkAll(port.labels[ALLOW_FROM_LABEL], `on port ${port.name ?? `#${i}`}`),
  ]);
  return { appliedByPort, problems };
}
