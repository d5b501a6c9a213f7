/**
 * One host's DesiredState of a chosen size, built directly (no compile), deterministic, for the
 * kernel and packet benchmarks.
 *
 * `members` allow members in total: the `include` members first (allow-ip4, e.g. a namespace's
 * real address so probes are allowed), then generated (source, tcp:port) pairs over `ports`
 * managed tcp ports (basePort upwards): a share in allow-net4 (172.16.0.0/12 /24 networks), a
 * share in allow-ip6 (fd00::/64 addresses), the rest in allow-ip4. Generated IPv4 sources are
 * split between 10.60.0.0/14 and 10.90.0.0/14, so the test network's 10.77.0.x addresses sort in
 * the middle of the list (the naive one-rule-per-pair chain of the packet benchmark keeps this
 * order). Lists are sorted by plain string order like the compiler's; failsafe tcp/22.
 */
import { SET_KINDS, type DesiredState, type SetKind } from '../../src/compile/desired-state.js';
import { stateVersion } from '../../src/compile/state-version.js';

export interface HostStateSpec {
  readonly members: number;
  readonly ports: number;
  readonly basePort: number;
  /** Fraction of members in allow-net4 (0..1). */
  readonly netShare: number;
  /** Fraction of members in allow-ip6 (0..1). */
  readonly v6Share: number;
  /** allow-ip4 members that must be present; counted in `members`. */
  readonly include: readonly string[];
}

function ip4Source(k: number): string {
  const half = k >> 1;
  const second = (k % 2 === 0 ? 60 : 90) + ((half >> 16) & 3);
  return `10.${second}.${(half >> 8) & 255}.${half & 255}`;
}

function net4Source(k: number): string {
  return `172.${16 + ((k >> 8) & 15)}.${k & 255}.0/24`;
}

function ip6Source(k: number): string {
  return `fd00::${((k >> 16) & 0xffff).toString(16)}:${(k & 0xffff).toString(16)}`;
}

function pairs(count: number, ports: number, basePort: number, source: (k: number) => string): string[] {
  const out: string[] = new Array<string>(count);
  for (let i = 0; i < count; i++) out[i] = `${source(Math.floor(i / ports))},tcp:${basePort + (i % ports)}`;
  return out;
}

export function makeState(sets: Partial<Record<SetKind, readonly string[]>>, hostId = 'bench-host'): DesiredState {
  const full = Object.fromEntries(SET_KINDS.map((k) => [k, sets[k] ?? []])) as Record<SetKind, readonly string[]>;
  return { hostId, mode: 'enforce', sets: full, version: stateVersion('enforce', full) };
}

export function syntheticHostState(spec: HostStateSpec): DesiredState {
  if (spec.ports < 1 || spec.basePort + spec.ports > 65536) throw new Error('bad port range');
  const net4 = Math.floor(spec.members * spec.netShare);
  const ip6 = Math.floor(spec.members * spec.v6Share);
  const ip4 = Math.max(0, spec.members - net4 - ip6 - spec.include.length);
  const managed = Array.from({ length: spec.ports }, (_, i) => String(spec.basePort + i));
  return makeState({
    'managed-tcp': managed,
    'failsafe-tcp': ['22'],
    'allow-ip4': [...spec.include, ...pairs(ip4, spec.ports, spec.basePort, ip4Source)].sort(),
    'allow-net4': pairs(net4, spec.ports, spec.basePort, net4Source).sort(),
    'allow-ip6': pairs(ip6, spec.ports, spec.basePort, ip6Source).sort(),
  });
}

/** The same state with `member` added to allow-ip4 (a one-member change). */
export function withAllowIp4(state: DesiredState, member: string): DesiredState {
  const sets: Partial<Record<SetKind, readonly string[]>> = { ...state.sets, 'allow-ip4': [...state.sets['allow-ip4'], member].sort() };
  return makeState(sets, state.hostId);
}

export function memberCount(state: DesiredState): number {
  return state.sets['allow-ip4'].length + state.sets['allow-net4'].length + state.sets['allow-ip6'].length + state.sets['allow-net6'].length;
}
