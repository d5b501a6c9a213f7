/**
 * Who is behind a peer name, as address sets: the compiler's view of groups and networks.
 *
 * - A group's source set is every address of every host that runs at least one (valid) task of
 *   an app of the group ("no IP per app": the whole host speaks for its tasks).
 * - A network's set is the union of its CIDRs minus the union of its excepts.
 * - `any` is every v4 and v6 address. An unknown name (impossible in a validated Policy) is empty.
 * Everything is computed once per compile; lookups are map reads. Group membership comes from
 * app-selector.ts groupMatcher (patterns indexed by literal prefix, so an app is tested only
 * against plausible groups).
 */
import type { App } from '../inventory/cluster-state.js';
import { groupMatcher } from '../policy/app-selector.js';
import type { PeerRef, Policy } from '../policy/policy-model.js';
import type { ParsedAddress } from '../net/address.js';
import { AddressSet } from './address-set.js';

export interface PeerSets {
  /** Group names each app belongs to, in policy order. */
  readonly groupsOfApp: ReadonlyMap<string, readonly string[]>;
  readonly groupSet: ReadonlyMap<string, AddressSet>;
  readonly networkSet: ReadonlyMap<string, AddressSet>;
  peerSet(peer: PeerRef): AddressSet;
}

export function buildPeerSets(
  policy: Policy,
  apps: readonly App[],
  hostsOfApp: ReadonlyMap<string, ReadonlySet<string>>,
  addressesOfHost: ReadonlyMap<string, readonly ParsedAddress[]>,
): PeerSets {
  const groupsOf = groupMatcher(policy);
  const groupsOfApp = new Map<string, string[]>(apps.map((a) => [a.id, groupsOf(a)]));
  const appsOfGroup = new Map<string, App[]>(policy.groups.map((g) => [g.name, []]));
  for (const app of apps) for (const g of groupsOfApp.get(app.id)!) appsOfGroup.get(g)!.push(app);
  const groupSet = new Map<string, AddressSet>();
  for (const group of policy.groups) {
    const hosts = new Set<string>();
    for (const app of appsOfGroup.get(group.name)!) {
      for (const h of hostsOfApp.get(app.id) ?? []) hosts.add(h);
    }
    const addresses: ParsedAddress[] = [];
    for (const h of hosts) addresses.push(...(addressesOfHost.get(h) ?? []));
    groupSet.set(group.name, AddressSet.fromAddresses(addresses));
  }
  const networkSet = new Map<string, AddressSet>();
  for (const net of policy.networks) {
    networkSet.set(net.name, AddressSet.fromStrings(net.cidrs).subtract(AddressSet.fromStrings(net.except)));
  }
  const peerSet = (peer: PeerRef): AddressSet => {
    if (peer.kind === 'any') return AddressSet.ALL;
    const map = peer.kind === 'group' ? groupSet : networkSet;
    return map.get(peer.name) ?? AddressSet.EMPTY;
  };
  return { groupsOfApp, groupSet, networkSet, peerSet };
}
