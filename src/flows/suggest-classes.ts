/**
 * The verdict classes of `suggest` (suggest.ts): which recorded flows the reference evaluator
 * must give the same answer, so that it judges one flow per class instead of every flow.
 *
 * Design. The evaluator (src/evaluate) walks the policy's rules in order for a destination task
 * port; what it asks about the source is only "does this peer contain it" (policy-walk.ts
 * `matches`). For a destination D = (app, port index, protocol, host port) the rules that can
 * decide are those whose `to` holds the app and whose ports cover D (found once per D here), and
 * the `portcullis.allow-from` declarations of the app and port. So the verdict of a source for D
 * is fixed by the first of D's rules whose `from` contains the source (and, when none decides,
 * which declared peers contain it): that is the class. Membership is read from indexes built
 * once, not by scanning the cluster per flow:
 *  - ingress (a source ADDRESS): a group contains it when it is an address of a host running a
 *    task of a member app (host address → groups, from every task once); a network, when the
 *    network holds it (NetworkIndex: sorted boundaries, binary search); `any` always;
 *  - egress (a source TASK of app A on host X): a group contains it when A is a member; a
 *    network, when X's address of the family is in it (every address of X of the family: the
 *    class lists each, as the evaluator requires all to allow).
 * The result of suggest's judging (allowed, the deciding or passing rule, or the default) is a
 * function of the class; reasons in words are used only for egress tier `no-address`, which is
 * never classed. Anything this reading does not cover exactly (an address not in canonical
 * spelling, an unknown app or host, a source host without an address of the family, a recorded
 * owner that is not the cluster's task now) gets no class: suggest judges it by its full key as
 * before. test/flows-suggest-classes.test.ts checks on random policies and clusters (fast-check)
 * that every flow's own judgement equals its class's.
 */
import type { App, ClusterState, Task } from '../inventory/cluster-state.js';
import { ALLOW_FROM_LABEL, type PeerRef, type Policy, type Protocol, type RuleDef } from '../policy/policy-model.js';
import { appMatchesGroup } from '../policy/app-selector.js';
import { parseAddress } from '../net/address.js';
import { hostIps, ipFamily, ipText, isFailsafe, parseIp } from '../evaluate/policy-walk.js';
import type { ObservedFlow } from './observed-flow.js';
import type { NetworkIndex } from './suggest-names.js';

/** A destination task port and what of the policy can decide for it. */
interface Destination {
  readonly id: string;
  readonly failsafe: boolean;
  /** The rules (policy order) whose `to` holds the app and whose ports cover the port. */
  readonly rules: readonly { readonly index: number; readonly action: RuleDef['action']; readonly from: readonly PeerRef[] }[];
  /** The allow-from declarations of the app and the port, as peers (empty: none). */
  readonly declared: readonly PeerRef[];
}

/** An owner of a claim as recorded (plan-judge recordedOwners): an app's task port. */
export interface JudgedOwner {
  readonly app: App;
  readonly task: Task;
  readonly index: number;
}

/** An owner of a claim now (egress-evaluator claimOwners). */
export interface ClaimOwner {
  readonly app: App;
  readonly task: Task;
  readonly portIndex: number;
}

function coversPort(rule: RuleDef, portName: string | undefined, hostPort: number, protocol: Protocol): boolean {
  if (rule.protocols !== null && !rule.protocols.includes(protocol)) return false;
  if (rule.ports.length === 0) return true;
  return rule.ports.some((p) => (p.kind === 'number' ? p.port === hostPort : p.kind === 'range' ? p.from <= hostPort && hostPort <= p.to : portName !== undefined && p.name === portName));
}

function declaredNames(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

export class VerdictClasses {
  private readonly groupsOfApp = new Map<string, ReadonlySet<string>>();
  /** Canonical host address → the groups of the apps with a task on that host. */
  private readonly groupsAtAddress = new Map<string, Set<string>>();
  private readonly destinations = new Map<string, Destination>();
  private readonly hostAddresses = new Map<string, readonly string[]>();
  private readonly families = new Map<string, 4 | 6 | undefined>();
  private readonly netsOf = new Map<string, ReadonlySet<string>>();
  private readonly apps: ReadonlyMap<string, App>;
  private readonly hosts: ReadonlySet<string>;

  constructor(
    private readonly policy: Policy,
    cluster: ClusterState,
    private readonly nets: NetworkIndex,
  ) {
    // The evaluator reads the first group of a name (policy-walk appInGroup).
    const groups = new Map<string, Policy['groups'][number]>();
    for (const g of policy.groups) if (!groups.has(g.name)) groups.set(g.name, g);
    const apps = new Map<string, App>();
    for (const a of cluster.apps) if (!apps.has(a.id)) apps.set(a.id, a);
    this.apps = apps;
    for (const a of apps.values()) this.groupsOfApp.set(a.id, new Set([...groups.values()].filter((g) => appMatchesGroup(a, g)).map((g) => g.name)));
    this.hosts = new Set(cluster.hosts.map((h) => h.id));
    for (const h of this.hosts) this.hostAddresses.set(h, hostIps(cluster, h).map(ipText));
    for (const t of cluster.tasks) {
      const member = this.groupsOfApp.get(t.appId);
      if (!member) continue;
      for (const a of this.hostAddresses.get(t.hostId) ?? []) {
        let set = this.groupsAtAddress.get(a);
        if (!set) this.groupsAtAddress.set(a, (set = new Set()));
        for (const g of member) set.add(g);
      }
    }
  }

  /** Whether `text` is an address of a cluster host (as hostIps spells it). */
  isHostAddress(text: string): boolean {
    if (!this.addressSet) {
      this.addressSet = new Set();
      for (const list of this.hostAddresses.values()) for (const a of list) this.addressSet.add(a);
    }
    return this.addressSet.has(text);
  }

  private addressSet: Set<string> | undefined;

  private destination(app: App, index: number, protocol: Protocol, hostPort: number): Destination {
    const id = `${app.id}\u0001${index}\u0001${protocol}\u0001${hostPort}`;
    let d = this.destinations.get(id);
    if (d) return d;
    const port = app.ports[index]!;
    const member = this.groupsOfApp.get(app.id) ?? new Set();
    const rules = this.policy.rules.flatMap((rule, i) => (rule.to.some((g) => member.has(g)) && coversPort(rule, port.name, hostPort, protocol) ? [{ index: i, action: rule.action, from: rule.from }] : []));
    const peerOf = (n: string): PeerRef => (n === 'any' ? { kind: 'any' } : this.policy.groups.some((g) => g.name === n) ? { kind: 'group', name: n } : { kind: 'network', name: n });
    const declared = [...declaredNames(app.labels[ALLOW_FROM_LABEL]), ...declaredNames(port.labels[ALLOW_FROM_LABEL])].map(peerOf);
    d = { id, failsafe: isFailsafe(this.policy, protocol, hostPort), rules, declared };
    this.destinations.set(id, d);
    return d;
  }

  /** The walk's class for `d` and a source `matches` describes (see the design above). */
  private walk(d: Destination, matches: (peer: PeerRef) => boolean): string {
    if (d.failsafe) return 'f';
    let passed = '';
    for (const r of d.rules) {
      if (!r.from.some(matches)) continue;
      if (r.action !== 'pass') return `r${r.index}`;
      passed = `p${r.index}`;
      break;
    }
    // Which declaration applies depends on the app (guardrails): the destination is named.
    return d.declared.length === 0 ? `${passed}d` : `${passed}L${d.id}:${d.declared.map((p) => (matches(p) ? 1 : 0)).join('')}`;
  }

  private networks(address: string): ReadonlySet<string> {
    let set = this.netsOf.get(address);
    if (!set) this.netsOf.set(address, (set = new Set(this.nets.networksOf(address))));
    return set;
  }

  private readonly spellings = new Map<string, boolean>();

  /** Whether `text` is an address in canonical spelling and not IPv4-mapped, once per text. */
  private classedSpelling(text: string): boolean {
    let ok = this.spellings.get(text);
    if (ok === undefined) {
      const a = parseAddress(text, { mapped: 'accept' });
      this.spellings.set(text, (ok = a.ok && a.canonical === text && !(text.includes(':') && text.includes('.'))));
    }
    return ok;
  }

  private family(text: string): 4 | 6 | undefined {
    if (!this.families.has(text)) {
      const ip = parseIp(text);
      this.families.set(text, ip ? ipFamily(ip) : undefined);
    }
    return this.families.get(text);
  }

  /**
   * The class of `f`, whose recorded owners resolve to `owners` (plan-judge recordedOwners) and
   * whose claim is owned now by `current` (claimOwners); undefined when `f` is not classed.
   */
  classOf(f: ObservedFlow, owners: readonly JudgedOwner[], current: readonly ClaimOwner[]): string | undefined {
    const { protocol, port } = f.destination;
    if (f.direction === 'ingress') {
      // A spelling both readers agree on: canonical, and no IPv4-mapped IPv6 form.
      if (!this.classedSpelling(f.source.address)) return undefined;
      const address = f.source.address;
      const groups = this.groupsAtAddress.get(address);
      const nets = this.networks(address);
      const matches = (p: PeerRef) => (p.kind === 'any' ? true : p.kind === 'group' ? groups?.has(p.name) === true : nets.has(p.name));
      return `i\u0002${owners.map((o) => this.walk(this.destination(o.app, o.index, protocol, port), matches)).join('\u0002')}`;
    }
    const source = this.apps.get(f.source.apps[0] ?? '');
    if (!source || !this.hosts.has(f.reportedBy) || !this.hosts.has(f.destination.hostId)) return undefined;
    if (!this.policy.defaults.egress) return 'e\u0002off';
    if (isFailsafe(this.policy, protocol, port)) return 'e\u0002f';
    // The claim judged is the cluster's now: a recorded owner that is a stand-in is not classed.
    const now = new Set(current.map((o) => o.task));
    if (current.length === 0 || owners.some((o) => !now.has(o.task))) return undefined;
    const family = this.family(f.destination.address) ?? this.family(f.source.address);
    if (family === undefined) return undefined;
    const ips = (this.hostAddresses.get(f.reportedBy) ?? []).filter((a) => a.includes(':') === (family === 6));
    if (ips.length === 0) return undefined;
    const member = this.groupsOfApp.get(source.id)!;
    const walks = current.map((o) => {
      const d = this.destination(o.app, o.portIndex, protocol, port);
      return ips.map((ip) => {
        const nets = this.networks(ip);
        return this.walk(d, (p) => (p.kind === 'any' ? true : p.kind === 'group' ? member.has(p.name) : nets.has(p.name)));
      });
    });
    return `e\u0002${walks.map((w) => w.join('\u0003')).join('\u0002')}`;
  }
}
