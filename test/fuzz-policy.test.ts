/**
 * Fuzzing the policy and inventory inputs (fast-check, bounded runs: seconds, not minutes).
 *
 * Generated texts (random YAML-ish structures, policy- and inventory-shaped documents with wrong
 * types, deep nesting, huge and hostile strings, the shipped examples cut at random offsets and
 * with mutated bytes) go to parsePolicy, parseStaticInventory and `portcullis check` in-process.
 * Asserted: nothing throws; a result is either ok or a list of diagnostics, each at a real
 * file:line:col of the input with a one-line message; and a policy watcher feeding a state store
 * keeps the last good policy (the same states) whenever the files are broken.
 *
 * What the fuzzer found is kept below as plain regression tests ("found by fuzzing").
 * A failing property prints its seed and path: replay it with FUZZ_SEED=<seed> FUZZ_PATH=<path>;
 * FUZZ_RUNS=<n> multiplies every run count for a longer hunt.
 */
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Alias, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { defaultInventoryPath, defaultPolicyPath } from '../src/package-root.js';
import { DesiredStateStore } from '../src/controller/desired-state-store.js';
import { formatDiagnostic, type Diagnostic } from '../src/diagnostic.js';
import { parseStaticInventory } from '../src/inventory/static-inventory.js';
import { appIdMatches } from '../src/policy/app-selector.js';
import { parsePolicy } from '../src/policy/parse-policy.js';
import { PolicyWatcher } from '../src/sources/policy-watcher.js';
import { runCli as cli } from './support/run-cli.js';

const SHOP_DIR = defaultPolicyPath();
const SHOP = readdirSync(SHOP_DIR)
  .sort()
  .map((name) => ({ name, text: readFileSync(join(SHOP_DIR, name), 'utf8') }));
const INVENTORY = readFileSync(defaultInventoryPath(), 'utf8');
const REPLAY = process.env['FUZZ_SEED'] ? { seed: Number(process.env['FUZZ_SEED']), path: process.env['FUZZ_PATH'] } : {};
/** FUZZ_RUNS=10 runs every property ten times as often (a longer hunt than CI's). */
const runs = (n: number): number => n * Math.max(1, Number(process.env['FUZZ_RUNS'] ?? 1));

// ---------------------------------------------------------------------------------------------
// Generators

const HOSTILE = [
  ';', '$(', '$(rm -rf /)', '`id`', '|', '&&', '\n', '\r\n', '\r', '\0', 'a\0b', '\t', '\u202e', '\u2028', '\ufeff',
  '\ud800', '💥', 'ﬀ', 'İ', '../../etc/passwd', '%s%n', '{{x}}', '*a', '&a', '!!binary', '!!js/function', '- ', ': ',
  '#', '"', "'", '\\', '---', '...', '? ', '<<', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'NaN',
  '-0', '1e400', '0x10', '0o17', '.inf', '~', 'null', 'yes', 'no', '2001-12-14', 'PCU-INPUT', '-j ACCEPT', '--flush',
];
const VOCAB = [
  'version', 'defaults', 'mode', 'action', 'failsafe', 'networks', 'cidrs', 'except', 'groups', 'apps', 'labels',
  'rules', 'name', 'from', 'to', 'ports', 'protocol', 'guardrails', 'sources', 'targets', 'deny', 'hosts', 'id',
  'addresses', 'network', 'containerPort', 'tasks', 'app', 'host', 'web', 'api', 'db', 'any', 'admin',
];
const SCALAR_WORDS = [
  'enforce', 'audit', 'allow', 'deny', 'pass', 'tcp', 'udp', 'udp,tcp', 'tcp/22', 'http', 'any', 'web', 'api',
  '/shop/web', '/shop/**', '/**', '10.0.0.0/8', '10.0.0.1', 'fd00::/8', '::ffff:10.0.0.0/104', '0.0.0.0/0', '::/0',
  '9000-9100', '100-1', 'bridge', 'host', 'node-1', '/shop/api', '31000',
];

const hostile = fc.constantFrom(...HOSTILE);
const anyString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...SCALAR_WORDS) },
  { weight: 2, arbitrary: hostile },
  { weight: 2, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
);
/** One huge string, placed once in a document (not in every leaf: parse time is what it is). */
const huge = fc.tuple(fc.constantFrom('a', '/', '9', '💥', ';', '\n'), fc.integer({ min: 10_000, max: 100_000 })).map(([c, n]) => c.repeat(n));
const scalar = fc.oneof(
  anyString,
  fc.integer({ min: -5, max: 70_000 }),
  fc.constantFrom(0, 1, 22, 65535, 65536, -1, 1.5, Number.MAX_SAFE_INTEGER, 1e300),
  fc.boolean(),
  fc.constant(null),
);
const key = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...VOCAB) }, { weight: 1, arbitrary: anyString });

/** Any JSON-like value, a few levels deep. */
const { value: anyValue } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(key, tie('value'), { maxKeys: 4 }),
  ),
}));

/** A value that is usually of the right shape for its place and sometimes anything at all. */
const mostly = <T>(right: fc.Arbitrary<T>): fc.Arbitrary<unknown> => fc.oneof({ weight: 4, arbitrary: right }, { weight: 1, arbitrary: anyValue });
const oneOrList = (a: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> => fc.oneof(a, fc.array(a, { maxLength: 3 }));
const word = fc.oneof({ weight: 5, arbitrary: fc.constantFrom('web', 'api', 'db', 'admin', 'lb', 'any', 'shop-api') }, { weight: 1, arbitrary: anyString });

const policyShaped = fc.record(
  {
    version: mostly(fc.constant(1)),
    defaults: mostly(fc.record({ mode: mostly(fc.constantFrom('enforce', 'audit')), action: mostly(fc.constantFrom('allow', 'deny')), failsafe: mostly(fc.array(mostly(fc.constantFrom('tcp/22', 'udp/53', 'tcp/0', 'sctp/1')))) }, { requiredKeys: [] })),
    networks: mostly(fc.dictionary(word, mostly(fc.record({ cidrs: mostly(oneOrList(mostly(fc.constantFrom(...SCALAR_WORDS)))), except: mostly(oneOrList(anyString)) }, { requiredKeys: [] })), { maxKeys: 3 })),
    groups: mostly(fc.dictionary(word, mostly(fc.record({ apps: mostly(oneOrList(mostly(fc.constantFrom('/shop/web', '/shop/*', '/**', 'noslash', '/')))), labels: mostly(fc.dictionary(anyString, mostly(anyString), { maxKeys: 2 })) }, { requiredKeys: [] })), { maxKeys: 4 })),
    rules: mostly(fc.array(mostly(fc.record({ name: mostly(word), from: mostly(oneOrList(word)), to: mostly(oneOrList(word)), ports: mostly(oneOrList(mostly(fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.constantFrom('http', '9000-9100', '5-1', 'x-y'))))), protocol: mostly(oneOrList(fc.constantFrom('tcp', 'udp', 'icmp'))), action: mostly(fc.constantFrom('allow', 'deny', 'pass', 'drop')) }, { requiredKeys: [] })), { maxLength: 5 })),
    guardrails: mostly(fc.record({ sources: mostly(oneOrList(word)), targets: mostly(oneOrList(word)), deny: mostly(fc.array(mostly(fc.record({ from: mostly(oneOrList(word)), to: mostly(oneOrList(word)) })), { maxLength: 2 })) }, { requiredKeys: [] })),
  },
  { requiredKeys: [] },
);

const inventoryShaped = fc.record(
  {
    hosts: mostly(fc.array(mostly(fc.record({ id: mostly(fc.constantFrom('node-1', 'node-2', 'a b', '')), addresses: mostly(oneOrList(mostly(fc.constantFrom('10.0.1.11', 'fd00:1::11', '::ffff:10.0.1.11', '10.0.0.256', '10.0.0.0/8', 'x')))) }, { requiredKeys: [] })), { maxLength: 3 })),
    apps: mostly(fc.array(mostly(fc.record({ id: mostly(fc.constantFrom('/shop/api', '/shop/web', 'noslash', '/')), network: mostly(fc.constantFrom('host', 'bridge', 'container', 'overlay')), labels: mostly(fc.dictionary(anyString, mostly(anyString), { maxKeys: 2 })), ports: mostly(fc.array(mostly(fc.record({ name: mostly(fc.constantFrom('http', 'metrics', 'bad name')), protocol: mostly(fc.constantFrom('tcp', 'udp', 'udp,tcp', 'sctp')), containerPort: mostly(fc.integer({ min: 0, max: 70_000 })), labels: mostly(fc.dictionary(anyString, anyString, { maxKeys: 2 })) }, { requiredKeys: [] })), { maxLength: 3 })) }, { requiredKeys: [] })), { maxLength: 3 })),
    tasks: mostly(fc.array(mostly(fc.record({ id: mostly(anyString), app: mostly(fc.constantFrom('/shop/api', '/shop/web', '/nope')), host: mostly(fc.constantFrom('node-1', 'node-2', 'node-9')), ports: mostly(fc.array(mostly(fc.integer({ min: 0, max: 70_000 })), { maxLength: 3 })) }, { requiredKeys: [] })), { maxLength: 4 })),
  },
  { requiredKeys: [] },
);

/** A value written as YAML (block or flow style), as JSON (a YAML subset), or a YAML string that failed to write. */
const asText = (value: fc.Arbitrary<unknown>): fc.Arbitrary<string> =>
  fc.tuple(value, fc.constantFrom('block', 'flow', 'json')).map(([v, style]) => {
    try {
      if (style === 'json') return JSON.stringify(v) ?? '';
      return stringify(v, style === 'flow' ? { collectionStyle: 'flow', lineWidth: 0 } : { lineWidth: 0 });
    } catch {
      return String(v);
    }
  });

const MUTATION_CHARS = [':', '-', ' ', '\n', '[', ']', '{', '}', '"', "'", '&', '*', '!', '\t', '#', ',', '|', '>', '%', '@', '`', '\0', 'x', '9', '/'];

/** `text` cut at a random offset, and/or with a few characters replaced, inserted or deleted. */
const mutated = (text: string): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.nat(text.length),
      fc.array(fc.tuple(fc.nat(text.length), fc.constantFrom('replace', 'insert', 'delete'), fc.constantFrom(...MUTATION_CHARS)), { maxLength: 4 }),
      fc.boolean(),
    )
    .map(([cut, edits, truncate]) => {
      let t = text;
      for (const [at, op, c] of edits) {
        const i = Math.min(at, t.length);
        t = op === 'replace' ? t.slice(0, i) + c + t.slice(i + 1) : op === 'insert' ? t.slice(0, i) + c + t.slice(i) : t.slice(0, i) + t.slice(i + 1);
      }
      return truncate ? t.slice(0, Math.min(cut, t.length)) : t;
    });

const deep = fc
  .tuple(fc.integer({ min: 10, max: 20_000 }), fc.constantFrom('flow-seq', 'flow-map', 'block-map', 'block-seq'), fc.constantFrom('', 'rules: ', 'hosts:\n  - '))
  .map(([n, kind, prefix]) => {
    if (kind === 'flow-seq') return prefix + '['.repeat(n) + ']'.repeat(n);
    if (kind === 'flow-map') return prefix + '{a: '.repeat(n) + '1' + '}'.repeat(n);
    if (kind === 'block-seq') return prefix + '- '.repeat(n) + 'x\n';
    return Array.from({ length: Math.min(n, 300) }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n') + ' v\n';
  });

/** A small policy or inventory with one huge key or value somewhere. */
const hugeText = fc
  .tuple(huge, fc.constantFrom('group-name', 'app', 'label', 'cidr', 'host', 'comment', 'plain'))
  .map(([h, where]) => {
    const q = JSON.stringify(h);
    if (where === 'group-name') return `groups:\n  ${q}: { apps: ["/a"] }\n`;
    if (where === 'app') return `groups:\n  web: { apps: [${q}] }\nrules:\n  - { from: any, to: web, action: allow }\n`;
    if (where === 'label') return `groups:\n  web: { labels: { ${q}: ${q} } }\n`;
    if (where === 'cidr') return `networks:\n  n: { cidrs: [${q}] }\n`;
    if (where === 'host') return `hosts:\n  - { id: ${q}, addresses: [${q}] }\napps:\n  - { id: ${q} }\n`;
    if (where === 'comment') return `# ${h.replace(/\n/g, ' ')}\nversion: 1\n`;
    return h;
  });

const shopFile = fc.constantFrom(...SHOP);
const policyText = fc.oneof(
  asText(anyValue),
  asText(policyShaped),
  deep,
  hugeText,
  shopFile.chain((f) => mutated(f.text)),
  fc.string({ unit: 'binary', maxLength: 200 }),
);
const inventoryText = fc.oneof(asText(anyValue), asText(inventoryShaped), deep, hugeText, mutated(INVENTORY), fc.string({ unit: 'binary', maxLength: 200 }));

// ---------------------------------------------------------------------------------------------
// What every answer must look like

function lineCount(text: string): number {
  return text.split(/\r\n|\r|\n/).length;
}

/** A diagnostic of one of `files`, at a line of that file, with a non-empty one-line message. */
function expectLocated(d: Diagnostic, files: readonly { path: string; text: string }[]): void {
  const file = files.find((f) => f.path === d.file);
  expect(file, `diagnostic of an unknown file: ${formatDiagnostic(d)}`).toBeDefined();
  expect(Number.isInteger(d.line) && d.line >= 1 && d.line <= lineCount(file!.text) + 1, formatDiagnostic(d)).toBe(true);
  expect(Number.isInteger(d.col) && d.col >= 1, formatDiagnostic(d)).toBe(true);
  expect(d.message.length).toBeGreaterThan(0);
  expect(formatDiagnostic(d)).not.toMatch(/[\n\r\0]/);
}

function checkPolicy(files: { path: string; text: string }[]): boolean {
  const result = parsePolicy(files);
  if (result.ok) {
    for (const w of result.warnings) expectLocated(w, files);
    return true;
  }
  expect(result.errors.length).toBeGreaterThan(0);
  for (const e of result.errors) expectLocated(e, files);
  return false;
}

function checkInventory(text: string): boolean {
  const result = parseStaticInventory('inventory.yaml', text);
  if (result.ok) return true;
  expect(result.errors.length).toBeGreaterThan(0);
  for (const e of result.errors) expectLocated(e, [{ path: 'inventory.yaml', text }]);
  return false;
}

// ---------------------------------------------------------------------------------------------

describe('fuzz: parsers', () => {
  it('parsePolicy never throws and locates every diagnostic (one file)', () => {
    fc.assert(fc.property(policyText, (text) => void checkPolicy([{ path: 'p.yaml', text }])), { numRuns: runs(200), ...REPLAY });
  });

  it('parsePolicy on a directory: the shop with one file replaced by a generated one', () => {
    fc.assert(
      fc.property(fc.nat(SHOP.length - 1), policyText, (i, text) => {
        const files = SHOP.map((f, k) => ({ path: `shop/${f.name}`, text: k === i ? text : f.text }));
        checkPolicy(files);
      }),
      { numRuns: runs(80), ...REPLAY },
    );
  });

  it('parseStaticInventory never throws and locates every diagnostic', () => {
    fc.assert(fc.property(inventoryText, (text) => void checkInventory(text)), { numRuns: runs(200), ...REPLAY });
  });
});

describe('fuzz: portcullis check in-process', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'pcut-fuzz-check-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('exits 0 or 1, printing only file:line:col lines and a summary', async () => {
    const policy = join(dir, 'policy.yaml');
    const inventory = join(dir, 'inventory.yaml');
    await fc.assert(
      fc.asyncProperty(policyText, fc.oneof(fc.constant(INVENTORY), inventoryText), async (p, inv) => {
        writeFileSync(policy, p);
        writeFileSync(inventory, inv);
        const r = await cli(['check', '--policy', policy, '--inventory', inventory]);
        expect([0, 1], r.err).toContain(r.code);
        expect(r.err).toBe('');
        const lines = r.out.split('\n');
        expect(lines.pop()).toBe('');
        const summary = lines.pop();
        expect(summary).toMatch(/\d+ errors?, \d+ warnings?/);
        for (const line of lines) expect(line).toMatch(/^[^\n]+\.yaml:\d+:\d+: \S/);
        expect(r.code === 0).toBe(lines.every((l) => /:\d+:\d+: warning: /.test(l)));
      }),
      { numRuns: runs(60), ...REPLAY },
    );
  });
});

describe('fuzz: the policy watcher keeps the last good policy', () => {
  it('a broken rules file never changes the states the store serves; restoring it is reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pcut-fuzz-watch-'));
    const store = new DesiredStateStore({ coalesceMs: 0 });
    const events: string[] = [];
    const errors: Diagnostic[][] = [];
    const watcher = new PolicyWatcher({
      path: dir,
      pollMs: 3_600_000,
      onPolicy: (policy) => {
        events.push('policy');
        store.setPolicy(policy);
      },
      onError: (e) => {
        events.push('error');
        errors.push([...e]);
      },
      onRestored: () => events.push('restored'),
    });
    try {
      cpSync(SHOP_DIR, dir, { recursive: true });
      const inventory = parseStaticInventory('inventory.yaml', INVENTORY);
      if (!inventory.ok) throw new Error('the shipped inventory does not parse');
      expect(await watcher.start()).toBe(true);
      store.setCluster(inventory.cluster);
      const versions = (): string[] => store.hostIds().map((h) => `${h}=${store.current(h)?.version}`);
      const good = versions();
      expect(good.length).toBeGreaterThan(0);
      const target = SHOP[SHOP.length - 1]!;
      const path = join(dir, target.name);
      await fc.assert(
        fc.asyncProperty(fc.oneof(mutated(target.text), policyText), async (text) => {
          const files = SHOP.map((f) => ({ path: join(dir, f.name), text: f.name === target.name ? text : f.text }));
          if (parsePolicy(files).ok) return; // a mutation that is still a valid policy is not this test's business
          events.length = 0;
          errors.length = 0;
          writeFileSync(path, text);
          await watcher.reload();
          expect(events).toEqual(['error']);
          for (const e of errors[0]!) expectLocated(e, files);
          expect(versions()).toEqual(good);
          writeFileSync(path, target.text);
          await watcher.reload();
          expect(events).toEqual(['error', 'restored']);
          expect(versions()).toEqual(good);
        }),
        { numRuns: runs(40), ...REPLAY },
      );
    } finally {
      watcher.stop();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('fuzz: app-id globs', () => {
  /** The RegExp reading of a glob (what app-selector.ts used to run): the reference for short patterns. */
  const reference = (pattern: string, id: string): boolean => {
    const source = pattern
      .split('**')
      .map((part) => part.split('*').map((lit) => lit.replace(/[\\^$.|?+()[\]{}]/g, '\\$&')).join('[^/]*'))
      .join('.*');
    return new RegExp(`^${source}$`, 's').test(id);
  };
  const glob = fc.string({ unit: fc.constantFrom('*', '/', 'a', 'b', '.', '-'), maxLength: 10 });
  const id = fc.string({ unit: fc.constantFrom('/', 'a', 'b', '.', '-', '*'), maxLength: 12 });

  it('appIdMatches agrees with the RegExp reading on short patterns', () => {
    fc.assert(fc.property(glob, id, (p, i) => appIdMatches(p, i) === reference(p, i)), { numRuns: runs(3000), ...REPLAY });
  });
});

describe('found by fuzzing', () => {
  it('a very long app pattern is matched, not a "regular expression too large" crash of check', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pcut-fuzz-found-'));
    try {
      const policy = join(dir, 'p.yaml');
      writeFileSync(policy, `groups:\n  web: { apps: ["/${'/'.repeat(300_000)}**"] }\nrules:\n  - { from: any, to: web, action: allow }\n`);
      const r = await cli(['check', '--policy', policy]);
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/warning: group 'web' selects no app of the cluster/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a backtracking-prone pattern against a long Marathon id is one pass over the id', () => {
    // Counted, not timed: the matcher is a set of live states advanced once per character of the
    // id (one `fill` of the next state set per character), never a backtracking search.
    const fill = vi.spyOn(Uint8Array.prototype, 'fill');
    try {
      const id = `/${'a'.repeat(5_000)}`;
      expect(appIdMatches(`/${'*a'.repeat(30)}*b`, id)).toBe(false);
      expect(fill.mock.calls.length).toBeGreaterThan(0);
      expect(fill.mock.calls.length).toBeLessThanOrEqual(id.length);
    } finally {
      fill.mockRestore();
    }
    expect(appIdMatches('/shop/**/web-*', '/shop/eu/west/web-1')).toBe(true);
    expect(appIdMatches('/shop/*', '/shop/eu/web')).toBe(false);
  });

  it('deep nesting is an error at the first level too deep, and later parses still work', () => {
    // The yaml Composer overflowed the stack near 800 levels; parsing such a text again in the
    // same process killed this suite's worker (FATAL ERROR: RegExpCompiler Allocation failed).
    for (const text of ['['.repeat(100_000) + ']'.repeat(100_000), `rules: ${'{a: '.repeat(5_000)}1${'}'.repeat(5_000)}`, `${'- '.repeat(5_000)}x\n`]) {
      const result = parsePolicy([{ path: 'p.yaml', text }]);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.errors).toHaveLength(1);
      expect(result.errors[0]!.message).toMatch(/^YAML nesting deeper than 64 levels/);
      expect(checkInventory(text)).toBe(false);
    }
    expect(parsePolicy(SHOP.map((f) => ({ path: f.name, text: f.text }))).ok).toBe(true);
    expect(checkInventory(INVENTORY)).toBe(true);
  });

  it('many aliases parse in linear time (Alias.resolve walked the whole document per alias)', () => {
    // Counted, not timed: 4,000 aliases took 29 s when each was resolved by Alias.resolve (a walk
    // of the whole document); the reader resolves them all from one walk and never calls it.
    const text = 'groups:\n  web: { apps: &a ["/a"] }\n' + Array.from({ length: 4_000 }, (_, i) => `  g${i}: { apps: *a }\n`).join('');
    const resolve = vi.spyOn(Alias.prototype, 'resolve');
    try {
      const result = parsePolicy([{ path: 'p.yaml', text }]);
      expect(result.ok).toBe(true);
      expect(result.ok && result.policy.groups.find((g) => g.name === 'g3999')?.apps).toEqual(['/a']);
      expect(resolve).not.toHaveBeenCalled();
    } finally {
      resolve.mockRestore();
    }
  });

  it('a NUL or a newline quoted from a file stays inside one diagnostic line', () => {
    const result = parsePolicy([{ path: 'p.yaml', text: 'groups:\n  "we\\0b\\nfake.yaml:1:1: x": { apps: ["/a"] }\n' }]);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(formatDiagnostic(result.errors[0]!)).toBe(
      "p.yaml:2:3: invalid group name 'we\\u0000b\\nfake.yaml:1:1: x': names use lowercase letters, digits, '-' and '_', start and end with a letter or digit, at most 63 characters",
    );
  });
});
