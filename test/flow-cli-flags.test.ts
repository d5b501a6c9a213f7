/** `portcullis agent`'s flow recording flags: defaults, `off`, bad values exit 2 with a precise message; --help documents them. */
import { describe, expect, it } from 'vitest';
import { flowOptions } from '../src/cli/commands/agent.js';
import { runCli } from './support/run-cli.js';

describe('portcullis agent: flow flags', () => {
  it('defaults: every 10 s, 65,536 entries, 600 s; off: no recording', () => {
    expect(flowOptions({})).toEqual({ intervalSeconds: 10, recording: { maxEntries: 65536, timeoutSeconds: 600 } });
    expect(flowOptions({ 'flow-interval': '2.5', 'flow-max-entries': '1024', 'flow-timeout': '60' })).toEqual({ intervalSeconds: 2.5, recording: { maxEntries: 1024, timeoutSeconds: 60 } });
    expect(flowOptions({ 'flow-interval': 'off' })).toBeUndefined();
  });

  it('bad values exit 2 with the flag, the range and the value', async () => {
    const cases: [string[], RegExp][] = [
      [['--flow-interval', '0'], /--flow-interval must be a number of seconds in 0.1..3600, got '0'/],
      [['--flow-interval', 'sometimes'], /--flow-interval must be a number of seconds/],
      [['--flow-max-entries', '0'], /--flow-max-entries must be a whole number in 1..4194304, got '0'/],
      [['--flow-max-entries', '1e3'], /--flow-max-entries must be a whole number/],
      [['--flow-timeout=0'], /--flow-timeout must be a whole number in 1..2147483, got '0'/],
      [['--flow-timeout', '5', '--flow-interval', '10'], /--flow-timeout \(5\) must be at least --flow-interval \(10\)/],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli(['agent', '--insecure', '--controller', 'c:7443', ...flags]);
      expect({ flags, code: r.code, matches: message.test(r.err) }).toEqual({ flags, code: 2, matches: true });
    }
  });

  it('--help documents them with their defaults', async () => {
    const r = await runCli(['agent', '--help']);
    expect(r.out).toMatch(/--flow-interval SECONDS\|off\s+how often .*\(default 10\); 'off': no\s+recording/s);
    expect(r.out).toMatch(/--flow-max-entries N\s+entries per flow set .*default 65536/s);
    expect(r.out).toMatch(/--flow-timeout SECONDS\s+.*\(default 600; at least --flow-interval\)/s);
  });
});
