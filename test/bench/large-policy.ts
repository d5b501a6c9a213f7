/**
 * A large but valid policy as YAML text (a directory of files), deterministic for a seed, written
 * against the synthetic cluster of synthetic-cluster.ts: the shape of the policy of issue 8
 * (tens of thousands of named networks, one rule per network, a few broad rules).
 *
 * - groups: those of `syntheticPolicy(size)` (one per team, the rest small service groups);
 * - `networks` networks `net-N`, each one IPv4 /24../32 (every 8th also an IPv6 /64, every 16th
 *   with an `except`), spread over 10.128.0.0/9 and fd20::/16;
 * - `rules` rules: rule i comes from network i (modulo the count), 2 % from a service group
 *   instead; its target is a service group (60 %), a team (30 %) or the hot group `team-0` (10 %:
 *   many rules onto one group, as partner networks onto an API); ports by name, 1 in 20 by number
 *   or range; actions allow (80 %), deny (15 %), pass (5 %).
 *   At 10,000 rules on the default synthetic cluster that compiles to about a million allow
 *   members, the size of the standard compile case (what grows here is the policy, not the output);
 * - files: `00-defaults.yaml`, `10-groups.yaml`, then networks and rules in chunks of 5,000.
 */
import type { PolicyFileText } from '../../src/policy/parse-policy.js';
import { seededRandom } from '../support/seeded-random.js';
import { syntheticPolicy, type SyntheticSize } from './synthetic-cluster.js';

export interface LargePolicySize extends SyntheticSize {
  readonly networks: number;
}

const CHUNK = 5000;

function v4Network(i: number, rand: () => number): string {
  // 10.128.0.0/9 holds 32,768 /24s; a network is one /24, /28 or a single address inside its own /24.
  const block = i % 32768;
  const a = 128 + (block >> 8);
  const b = block & 255;
  const shape = rand();
  if (shape < 0.6) return `10.${a}.${b}.0/24`;
  if (shape < 0.9) return `10.${a}.${b}.${16 * Math.floor(rand() * 16)}/28`;
  return `10.${a}.${b}.${1 + Math.floor(rand() * 254)}`;
}

function chunks<T>(list: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += CHUNK) out.push(list.slice(i, i + CHUNK));
  return out;
}

function pad(n: number): string {
  return String(n).padStart(3, '0');
}

export function largePolicyFiles(size: LargePolicySize, seed = 3, dir = 'large'): PolicyFileText[] {
  const rand = seededRandom(seed);
  const pick = (n: number) => Math.floor(rand() * n);
  const groups = syntheticPolicy(size, seed + 1).groups;
  const teams = groups.filter((g) => g.name.startsWith('team-')).map((g) => g.name);
  const services = groups.filter((g) => g.name.startsWith('svc-')).map((g) => g.name);
  const one = (list: readonly string[]) => list[pick(list.length)] ?? teams[0]!;
  const files: PolicyFileText[] = [];
  files.push({
    path: `${dir}/00-defaults.yaml`,
    text: 'version: 1\ndefaults:\n  mode: enforce\n  action: deny\n  failsafe: [tcp/22]\n',
  });
  const groupLines = ['groups:'];
  for (const g of groups) groupLines.push(`  ${g.name}: { apps: [${g.apps.map((a) => `"${a}"`).join(', ')}] }`);
  files.push({ path: `${dir}/10-groups.yaml`, text: `${groupLines.join('\n')}\n` });

  const nets: string[] = [];
  for (let i = 0; i < size.networks; i++) {
    const v4 = v4Network(i, rand);
    const cidrs = [v4];
    if (i % 8 === 0) cidrs.push(`"fd20:${(i % 65536).toString(16)}::/64"`);
    const except = i % 16 === 0 && v4.endsWith('/24') ? `, except: [${v4.replace('.0/24', '.128/25')}]` : '';
    nets.push(`  net-${i}: { cidrs: [${cidrs.join(', ')}]${except} }`);
  }
  chunks(nets).forEach((c, k) => files.push({ path: `${dir}/20-networks-${pad(k)}.yaml`, text: `networks:\n${c.join('\n')}\n` }));

  const rules: string[] = [];
  for (let i = 0; i < size.rules; i++) {
    const from = size.networks > 0 && rand() >= 0.02 ? `net-${i % size.networks}` : one(services);
    const t = rand();
    const to = t < 0.1 ? 'team-0' : t < 0.4 ? teams[pick(teams.length)]! : one(services);
    const p = rand();
    const ports = p < 0.03 ? '31000' : p < 0.05 ? '"31000-31999"' : rand() < 0.8 ? 'http' : 'metrics';
    const a = rand();
    const action = a < 0.8 ? 'allow' : a < 0.95 ? 'deny' : 'pass';
    rules.push(`  - { name: r-${i}, from: ${from}, to: ${to}, ports: [${ports}], action: ${action} }`);
  }
  chunks(rules).forEach((c, k) => files.push({ path: `${dir}/30-rules-${pad(k)}.yaml`, text: `rules:\n${c.join('\n')}\n` }));
  return files;
}

/** Total bytes of the files' text (UTF-8). */
export function policyBytes(files: readonly PolicyFileText[]): number {
  return files.reduce((n, f) => n + Buffer.byteLength(f.text), 0);
}
