/**
 * Parsing a reloaded policy off the controller's event loop.
 *
 * Parsing YAML is synchronous and costs about a second per megabyte of policy; on the event loop
 * that would stall every agent stream, ping and /status answer for as long. So the controller
 * parses each reload in a fresh `worker_threads` worker (policy-parse-worker.ts) and gets the
 * ParseResult back as data (structured clone; a Policy is plain data), its lists in parts so no
 * single decode blocks for long; without `sites` (which only lint uses). The worker's heap is
 * capped in proportion to `maxBytes`, so even a policy that would need more memory to parse than
 * the limits foresee ends in a clear error of this load, never in the controller running out of
 * memory. When the worker script is not there (running from TypeScript sources under the test
 * runner), the parse runs inline.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ParseResult, PolicyFileText } from '../policy/parse-policy.js';
import type { Policy } from '../policy/policy-model.js';
import type { WorkerMessage } from './policy-parse-worker.js';
import { parsePolicyWithin, POLICY_LIMIT_FLAGS, type PolicyLimits } from '../policy/policy-limits.js';

export type PolicyParser = (files: readonly PolicyFileText[]) => Promise<ParseResult>;

/** Heap of the parse worker: about 160 bytes per byte of policy allowed (YAML nodes with positions), at least 512 MB. */
export function parseWorkerHeapMb(limits: PolicyLimits): number {
  return Math.max(512, Math.ceil((limits.maxBytes * 160) / 2 ** 20));
}

export function workerPolicyParser(path: string, limits: PolicyLimits): PolicyParser {
  const script = fileURLToPath(new URL('./policy-parse-worker.js', import.meta.url));
  if (!existsSync(script)) return async (files) => parsePolicyWithin(path, files, limits);
  const heapMb = parseWorkerHeapMb(limits);
  return (files) =>
    new Promise<ParseResult>((resolve) => {
      let settled = false;
      const settle = (result: ParseResult): void => {
        if (settled) return;
        settled = true;
        resolve(result);
        void worker.terminate();
      };
      const fail = (message: string): void => settle({ ok: false, errors: [{ file: path, line: 1, col: 1, message, severity: 'error' }] });
      const worker = new Worker(script, { workerData: { path, files, limits }, resourceLimits: { maxOldGenerationSizeMb: heapMb } });
      const lists: Record<'networks' | 'groups' | 'rules', unknown[]> = { networks: [], groups: [], rules: [] };
      worker.on('message', (m: WorkerMessage) => {
        if (m.kind === 'part') {
          for (const item of m.items) lists[m.list].push(item);
          setImmediate(() => worker.postMessage('next'));
          return;
        }
        const result = m.result as ParseResult;
        if (!result.ok) return settle(result);
        const policy = { ...result.policy, ...lists } as unknown as Policy;
        settle({ ok: true, policy, warnings: result.warnings, sites: { rules: new Map() } });
      });
      worker.once('error', (e: Error & { code?: string }) =>
        fail(
          e.code === 'ERR_WORKER_OUT_OF_MEMORY'
            ? `policy too large to parse: the parser ran out of its ${heapMb} MB of memory; make the policy smaller (or lower --${POLICY_LIMIT_FLAGS.maxBytes} so such a policy is refused before parsing)`
            : `policy could not be parsed: ${e.message}`,
        ),
      );
      worker.once('exit', (code) => fail(`policy could not be parsed: the parser stopped (exit code ${code})`));
    });
}
