/**
 * Ratio figures measured in mirrored cycles, for the connection-rate scenarios (egress, flows):
 * each cycle runs every configuration twice, in order and then in reverse (ABBA), so a linear
 * drift of the machine's speed cancels within a cycle, and the figure is the median over the
 * cycles of (the configuration's runs / the baseline's runs in that cycle): one burst of other
 * work on this shared machine moves one cycle, not the figure. The CPU time of the processes in
 * a cgroup (cgroup2 `cpu.stat`) is a second view of the same cost.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestCgroup } from '../support/cgroup.js';

/** Cycles per scenario (odd: the median of the per-cycle ratios is one of them). */
export const CYCLES = 5;

/** One cycle of `configs`: each twice, mirrored. */
export function mirroredCycle<C>(configs: readonly C[]): readonly C[] {
  return [...configs, ...[...configs].reverse()];
}

/** CPU time used by the processes of a cgroup so far (cgroup2 `cpu.stat`, no controller needed), µs. */
export function cpuUsec(c: TestCgroup): number {
  const m = /^usage_usec (\d+)$/m.exec(readFileSync(join(c.dir, 'cpu.stat'), 'utf8'));
  if (!m) throw new Error(`no usage_usec in ${c.dir}/cpu.stat`);
  return Number(m[1]);
}

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function middle(samples: readonly number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export interface CycleRun<C> {
  readonly cycle: number;
  readonly config: C;
  readonly perSecond: number;
  /** CPU of the measured processes over the run, per connection counted, µs (NaN when not measured). */
  readonly cpuPerConnection: number;
}

/** One ratio per cycle: `of` summed over the cycle's runs of `config`, over the same for its runs of `baseline`. */
export function cycleRatios<C>(runs: readonly CycleRun<C>[], config: C, baseline: C, of: (r: CycleRun<C>) => number): number[] {
  const cycles = new Set(runs.map((r) => r.cycle));
  return [...cycles].sort((a, b) => a - b).map((k) => {
    const sum = (c: C) => runs.filter((r) => r.cycle === k && r.config === c).reduce((a, r) => a + of(r), 0);
    return sum(config) / sum(baseline);
  });
}
