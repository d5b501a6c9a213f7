/**
 * How the agent logs a connection problem that persists (agent/connect-warnings.ts): each
 * distinct problem at warn once, then at debug until `repeatWarnMs` has passed, also when several
 * replicas fail in turn (grpc-js names the replica's address in its reason, so their problems
 * alternate); a good stream starts again.
 */
import { describe, expect, it } from 'vitest';
import { ConnectWarnings } from '../agent/connect-warnings.js';

function recorder() {
  const lines: { level: 'debug' | 'warn'; reason: unknown; attempts: unknown }[] = [];
  const at = (level: 'debug' | 'warn') => (fields: object) => {
    const f = fields as { reason?: unknown; attempts?: unknown };
    lines.push({ level, reason: f.reason, attempts: f.attempts });
  };
  return { lines, logger: { debug: at('debug'), info: () => undefined, warn: at('warn') } };
}

const refused = (address: string): string => `No connection established. Last error: Error: connect ECONNREFUSED ${address} (2026-01-02T03:04:05.678Z). Resolution note: `;
const where = (controller: string) => ({ hostId: 'h1', controller, next: null, retryInMs: 500 });

describe('ConnectWarnings', () => {
  it('replicas failing in turn: each problem at warn once, the repeats at debug, all counted', () => {
    const { lines, logger } = recorder();
    const warnings = new ConnectWarnings(logger, 300_000);
    const replicas = ['10.0.0.1:7443', '10.0.0.2:7443', '10.0.0.3:7443'];
    for (let round = 0; round < 4; round++) for (const r of replicas) warnings.problem(refused(r), where(r));
    const warned = lines.filter((l) => l.level === 'warn');
    expect(warned.map((l) => l.reason)).toEqual(replicas.map((r) => `No connection established. Last error: Error: connect ECONNREFUSED ${r}`));
    expect(lines.filter((l) => l.level === 'debug')).toHaveLength(9);
    expect(lines.at(-1)?.attempts).toBe(12);
    // A good stream: the next problem is news again.
    warnings.reset();
    warnings.problem(refused(replicas[0]!), where(replicas[0]!));
    expect(lines.at(-1)).toMatchObject({ level: 'warn', attempts: 1 });
  });
});
