/** `groups.<name>.mode`: read as written, absent when not written, anything else an error at its place. */
import { describe, expect, it } from 'vitest';
import { parsePolicy } from '../src/policy/parse-policy.js';

const parse = (groups: string) => parsePolicy([{ path: 'p.yaml', text: `groups:\n${groups}` }]);

describe('groups.<name>.mode', () => {
  it('is audit or enforce as written, and no key at all when not written', () => {
    const r = parse('  a: { apps: ["/a"], mode: audit }\n  b: { apps: ["/b"], mode: enforce }\n  c: { apps: ["/c"] }\n');
    if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('; '));
    expect(r.policy.groups.map((g) => [g.name, g.mode])).toEqual([['a', 'audit'], ['b', 'enforce'], ['c', undefined]]);
    expect(Object.keys(r.policy.groups[2]!)).not.toContain('mode');
  });

  it('refuses another value or type at its line and column, saying what to write', () => {
    const r = parse('  a:\n    apps: ["/a"]\n    mode: Audit\n  b:\n    apps: ["/b"]\n    mode: 1\n');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => `${e.line}:${e.col} ${e.message}`)).toEqual([
      "4:11 unknown mode 'Audit' (did you mean 'audit'?); expected enforce or audit as the mode of group 'a' (or leave 'mode' out: its apps follow defaults.mode)",
      expect.stringMatching(/^7:11 'mode' of group 'b' must be a string/),
    ]);
  });
});
