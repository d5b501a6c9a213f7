/**
 * The judging of `portcullis suggest` (suggest.ts): whether a recorded flow is evidence under the
 * policy in force, and what of it a rule names (its source, destination apps and port).
 *
 * Judging is memoized: a verdict depends on the flow's class, not on its key (suggest-classes.ts:
 * the first rule of the destination's that contains the source). The recorded owners of each
 * claim are resolved once; the reference evaluator judges the first flow of each class. A flow
 * without a class is judged by its full key: an outside address by which networks hold it (it is
 * no host's, so in no group), a host address, an egress record's app and host, by themselves;
 * with the claim and its recorded owners.
 *
 * What a rule names of a flow is split in a destination half (claimPart: the destination apps and
 * the port, by name when every owner has that name) and a source half (sourcePart: the source
 * apps, or the canonical address), so that the aggregation (suggest-aggregate.ts) works each out
 * once per claim and once per source, not once per record.
 */
import type { App, ClusterState } from '../inventory/cluster-state.js';
import type { Policy } from '../policy/policy-model.js';
import { PORT_NAME_RE } from '../policy/names.js';
import { parseAddress, type ParsedAddress } from '../net/address.js';
import { claimOwners } from '../evaluate/egress-evaluator.js';
import type { ObservedFlow } from './observed-flow.js';
import { judgeFlow, recordedOwners } from './plan-judge.js';
import { VerdictClasses } from './suggest-classes.js';
import { NetworkIndex, nameableAppId } from './suggest-names.js';

/** The canonical text (RFC 5952) of an address, or undefined. */
export function canonical(text: string): string | undefined {
  const a = parseAddress(text, { mapped: 'accept' });
  return a.ok ? a.canonical : undefined;
}

/** A parsed address with its canonical text. */
export type Parsed = ParsedAddress & { readonly canonical: string };

/** The text of a flow's claim as recorded (host, address, protocol, port, port name, owners). */
export function claimText(f: ObservedFlow): string {
  const d = f.destination;
  return `${d.hostId}\u0000${d.address}\u0000${d.protocol}\u0000${d.port}\u0000${d.portName ?? ''}\u0000${d.apps.map((a) => `${a.appId}\u0001${a.taskIds.join('\u0001')}`).join('\u0000')}`;
}

/** The memoized judging of suggest (see above). */
export class Judging {
  readonly nets: NetworkIndex;
  /** The cluster hosts' addresses, canonical. */
  readonly hostAddresses: ReadonlySet<string>;
  private readonly verdicts = new Map<string, string | 'allowed' | undefined>();
  private readonly claims = new Map<string, ReturnType<typeof claimOwners>>();
  private readonly recorded = new Map<string, ReturnType<typeof recordedOwners>>();
  readonly classes: VerdictClasses;
  readonly apps: ReadonlyMap<string, App>;

  constructor(
    private readonly policy: Policy,
    private readonly cluster: ClusterState,
  ) {
    this.nets = new NetworkIndex(policy);
    this.hostAddresses = new Set(cluster.hosts.flatMap((h) => h.addresses.flatMap((a) => canonical(a) ?? [])));
    this.apps = new Map(cluster.apps.map((a) => [a.id, a]));
    this.classes = new VerdictClasses(policy, cluster, this.nets);
  }

  private readonly smallestOf = new Map<string, string | undefined>();
  private readonly parsedOf = new Map<string, Parsed | undefined>();

  /** The smallest network of the policy holding `address`, once per address. */
  smallest(address: string): string | undefined {
    if (!this.smallestOf.has(address)) this.smallestOf.set(address, this.nets.smallest(address));
    return this.smallestOf.get(address);
  }

  /** The address `text` spells (IPv4-mapped accepted), once per text. */
  parsed(text: string): Parsed | undefined {
    if (!this.parsedOf.has(text)) {
      const a = parseAddress(text, { mapped: 'accept' });
      this.parsedOf.set(text, a.ok ? a : undefined);
    }
    return this.parsedOf.get(text);
  }

  /** canonical(), once per text. */
  canonical(text: string): string | undefined {
    return this.parsed(text)?.canonical;
  }

  owners(f: ObservedFlow): ReturnType<typeof claimOwners> {
    const key = `${f.destination.hostId}\u0000${f.destination.protocol}\u0000${f.destination.port}`;
    let owners = this.claims.get(key);
    if (!owners) this.claims.set(key, (owners = claimOwners(this.cluster, f.destination.hostId, f.destination.protocol, f.destination.port)));
    return owners;
  }

  /** Why `flow` gives no evidence (undefined: it does), after judging it by the policy now. */
  unusable(f: ObservedFlow): string | 'allowed' | undefined {
    const claim = claimText(f);
    return this.unusableAt(f, claim, this.recordedOf(claim, f));
  }

  /** The recorded owners of `f`'s claim (its claimText), once per claim. */
  recordedOf(claim: string, f: ObservedFlow): ReturnType<typeof recordedOwners> {
    let recorded = this.recorded.get(claim);
    if (!recorded) this.recorded.set(claim, (recorded = recordedOwners(this.cluster, f)));
    return recorded;
  }

  /** unusable() with the claim's text and recorded owners worked out already. */
  unusableAt(f: ObservedFlow, claim: string, recorded: ReturnType<typeof recordedOwners>): string | 'allowed' | undefined {
    const cls = typeof recorded === 'string' ? undefined : this.classes.classOf(f, recorded, this.owners(f));
    let key: string;
    if (cls !== undefined) key = `c\u0002${cls}`;
    else {
      const ip = this.canonical(f.source.address);
      const address = ip ?? f.source.address;
      const source =
        f.direction === 'egress'
          ? `e\u0000${f.reportedBy}\u0000${f.source.apps[0] ?? ''}`
          : ip && !this.hostAddresses.has(address)
            ? `n\u0000${address.includes(':') ? 6 : 4}\u0000${this.nets.networksOf(address).join('\u0000')}`
            : `a\u0000${address}`;
      key = `${source}\u0002${claim}`;
    }
    if (this.verdicts.has(key)) return this.verdicts.get(key);
    const why = judged(this.policy, this.cluster, f);
    this.verdicts.set(key, why);
    return why;
  }
}

/** What suggest takes from the judgement of `flow` now: allowed, why it is no evidence, or undefined (evidence). */
export function judged(policy: Policy, cluster: ClusterState, flow: ObservedFlow): string | 'allowed' | undefined {
  const judged = judgeFlow(policy, cluster, flow);
  if (!judged.ok) return `cannot be judged now: ${judged.why}`;
  const j = judged.judgement;
  if (j.verdict === 'allowed') return 'allowed';
  if (j.rule !== undefined) {
    return j.tier === 'policy'
      ? `denied by rule '${j.rule}' (${j.at ?? '?'}), an explicit deny: a rule appended after it cannot allow this`
      : `rule '${j.rule}' (${j.at ?? '?'}) passes it to developer labels: allow it with a portcullis.allow-from label, not a rule`;
  }
  // Only egress has other deny tiers (no-address: names the host and app, which are in the key).
  if (j.tier !== 'default') return `denied by tier ${j.tier}, not by the default: ${j.reason}`;
  return undefined;
}

/** Why an app id cannot be a group member, as a skip reason. */
export const unnameable = (id: string) => `app id ${JSON.stringify(id)} cannot be named exactly in a group (apps: takes '/'-absolute ids, '*' is a glob)`;

/** The destination half of what a rule names: the destination apps (ids), the port, or the first app id a group cannot name. */
export interface ClaimPart {
  readonly bad?: string;
  readonly destApps: readonly string[];
  readonly port: string | number;
}

export function claimPart(judging: Judging, flow: ObservedFlow): ClaimPart {
  const dest = flow.destination.apps.map((a) => a.appId).filter((id) => id !== '');
  const bad = dest.find((id) => !nameableAppId(id));
  const name = flow.destination.portName;
  // The port name must still be the app's (the rule names it), and a valid policy port name.
  // Every owner of the claim must have that name (else a rule by name leaves an owner closed).
  const owners = judging.owners(flow);
  const named =
    name !== undefined &&
    PORT_NAME_RE.test(name) &&
    dest.every((id) => judging.apps.get(id)?.ports.some((p) => p.name === name)) &&
    owners.every((o) => o.app.ports[o.portIndex]?.name === name);
  return { ...(bad !== undefined ? { bad } : {}), destApps: [...new Set(dest)], port: named ? name! : flow.destination.port };
}

/** The source half: the source apps (egress: the app; ingress from a cluster host: its apps), the canonical address (`canonical`: of the source address), or why neither. */
export type SourcePart = { readonly bad?: string; readonly apps: readonly string[] } | { readonly address: string } | { readonly why: string };

export function sourcePart(flow: ObservedFlow, canonical: string | undefined): SourcePart {
  if (flow.direction === 'egress' || flow.source.kind === 'host') {
    const bad = flow.source.apps.find((id) => !nameableAppId(id));
    if (bad !== undefined) return { bad, apps: [] };
    if (flow.direction === 'egress') return { apps: flow.source.apps.slice(0, 1) };
    if (flow.source.apps.length > 0) return { apps: [...new Set(flow.source.apps)] };
  }
  if (!canonical) return { why: `source address ${JSON.stringify(flow.source.address)} is not an address` };
  return { address: canonical };
}
