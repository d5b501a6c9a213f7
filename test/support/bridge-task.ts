/**
 * A Docker-like BRIDGE task inside a test host namespace (see netns.ts), for end-to-end tests and
 * the demo: a "container" namespace joined to a `docker0` bridge in the host namespace, addressed
 * 172.30.<host>.<slot>/24 and fd30:<host>::<slot>/64 (the bridge holds .1 / ::1 and is the
 * container's default route), plus what Docker writes for a published port:
 *
 *   nat PREROUTING  -p <proto> -m addrtype --dst-type LOCAL --dport <hostPort>
 *                   -j DNAT --to-destination <containerIp>:<containerPort>      (iptables and ip6tables)
 *   nat POSTROUTING -s <bridge subnet> ! -o docker0 -j MASQUERADE
 *   net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=1
 *
 * Nothing here is Portcullis: the agent must filter the host port in mangle PREROUTING, before
 * this DNAT. Every command is an `ip netns exec` argument array, never a shell. The container
 * namespace is named `<hostNs>-c<slot>` (so it carries the run's `pcut-<pid>-` prefix and a crashed
 * run is swept like any other); `destroy()` deletes it. Listeners go in `ns` on the container port.
 */
import type { Protocol } from '../../src/policy/policy-model.js';
import { run, runOk, type TestHost, type TestNetwork } from './netns.js';

export interface PublishedPort {
  readonly protocol: Protocol;
  readonly hostPort: number;
  readonly containerPort: number;
}

export interface BridgeTaskOptions {
  /** 1..250: the third octet of the host's bridge subnet (use the host's 1-based index). */
  readonly hostIndex: number;
  /** 2..250: the container's last octet on that bridge; one per container of the host. */
  readonly slot: number;
  readonly ports: readonly PublishedPort[];
}

export interface BridgeTask {
  readonly ns: string;
  readonly hostNs: string;
  readonly v4: string;
  readonly v6: string;
  destroy(): Promise<void>;
}

const BRIDGE = 'docker0';

async function inNs(net: TestNetwork, ns: string, argv: readonly string[]): Promise<void> {
  const r = await net.exec(ns, argv);
  if (r.code !== 0) throw new Error(`in ${ns}: ${argv.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
}

async function ensureBridge(net: TestNetwork, host: TestHost, hostIndex: number): Promise<void> {
  const exists = await run('ip', ['-n', host.ns, 'link', 'show', BRIDGE]);
  if (exists.code === 0) return;
  const ip = (argv: string[]): Promise<unknown> => runOk('ip', ['-n', host.ns, ...argv]);
  await ip(['link', 'add', BRIDGE, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  await ip(['addr', 'add', `172.30.${hostIndex}.1/24`, 'dev', BRIDGE]);
  await ip(['addr', 'add', `fd30:${hostIndex}::1/64`, 'dev', BRIDGE, 'nodad']);
  await ip(['link', 'set', BRIDGE, 'up']);
  await inNs(net, host.ns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  for (const [cmd, subnet] of [
    ['iptables', `172.30.${hostIndex}.0/24`],
    ['ip6tables', `fd30:${hostIndex}::/64`],
  ] as const) {
    await inNs(net, host.ns, [cmd, '-w', '-t', 'nat', '-A', 'POSTROUTING', '-s', subnet, '!', '-o', BRIDGE, '-j', 'MASQUERADE']);
  }
}

export async function createBridgeTask(net: TestNetwork, host: TestHost, opts: BridgeTaskOptions): Promise<BridgeTask> {
  const { hostIndex, slot } = opts;
  if (!Number.isInteger(hostIndex) || hostIndex < 1 || hostIndex > 250) throw new Error(`hostIndex ${hostIndex} out of 1..250`);
  if (!Number.isInteger(slot) || slot < 2 || slot > 250) throw new Error(`slot ${slot} out of 2..250`);
  await ensureBridge(net, host, hostIndex);
  const ns = `${host.ns}-c${slot}`;
  const v4 = `172.30.${hostIndex}.${slot}`;
  const v6 = `fd30:${hostIndex}::${slot}`;
  const hostSide = `veth${slot}`;
  await runOk('ip', ['netns', 'add', ns]);
  const destroy = async (): Promise<void> => {
    const r = await run('ip', ['netns', 'del', ns]);
    if (r.code !== 0 && !/No such file/.test(r.stderr)) throw new Error(`could not delete ${ns}: ${r.stderr.trim()}`);
  };
  try {
    await runOk('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await inNs(net, ns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    await runOk('ip', ['-n', host.ns, 'link', 'add', hostSide, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    await runOk('ip', ['-n', host.ns, 'link', 'set', hostSide, 'master', BRIDGE]);
    await runOk('ip', ['-n', host.ns, 'link', 'set', hostSide, 'up']);
    await runOk('ip', ['-n', ns, 'addr', 'add', `${v4}/24`, 'dev', 'eth0']);
    await runOk('ip', ['-n', ns, 'addr', 'add', `${v6}/64`, 'dev', 'eth0', 'nodad']);
    await runOk('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    await runOk('ip', ['-n', ns, 'route', 'add', 'default', 'via', `172.30.${hostIndex}.1`]);
    await runOk('ip', ['-n', ns, '-6', 'route', 'add', 'default', 'via', `fd30:${hostIndex}::1`]);
    for (const p of opts.ports) {
      for (const [cmd, dest] of [
        ['iptables', `${v4}:${p.containerPort}`],
        ['ip6tables', `[${v6}]:${p.containerPort}`],
      ] as const) {
        await inNs(net, host.ns, [
          cmd, '-w', '-t', 'nat', '-A', 'PREROUTING', '-p', p.protocol, '-m', 'addrtype', '--dst-type', 'LOCAL',
          '--dport', String(p.hostPort), '-j', 'DNAT', '--to-destination', dest,
        ]);
      }
    }
  } catch (error) {
    await destroy().catch(() => undefined);
    throw error;
  }
  return { ns, hostNs: host.ns, v4, v6, destroy };
}
