/**
 * Worker thread entry of src/controller/policy-parser.ts: parses one policy (its files' texts in
 * `workerData`) within the limits and posts the ParseResult back, a valid policy's networks,
 * groups and rules in parts of PART items, one part each time the controller asks ('next'):
 * every message is decoded on the controller's event loop, and a port delivers all queued
 * messages in one go, so parts are pulled one per turn to keep each decode short. `sites` are not
 * sent (the controller does not lint).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { PolicyFileText } from '../policy/parse-policy.js';
import { parsePolicyWithin, type PolicyLimits } from '../policy/policy-limits.js';

export type WorkerMessage =
  | { readonly kind: 'part'; readonly list: 'networks' | 'groups' | 'rules'; readonly items: readonly unknown[] }
  | { readonly kind: 'done'; readonly result: unknown };

const PART = 1000;
const job = workerData as { path: string; files: PolicyFileText[]; limits: PolicyLimits };
const result = parsePolicyWithin(job.path, job.files, job.limits);
const messages: WorkerMessage[] = [];
if (!result.ok) {
  messages.push({ kind: 'done', result });
} else {
  const { networks, groups, rules, ...rest } = result.policy;
  for (const [list, items] of [['networks', networks], ['groups', groups], ['rules', rules]] as const) {
    for (let i = 0; i < items.length; i += PART) messages.push({ kind: 'part', list, items: items.slice(i, i + PART) });
  }
  messages.push({ kind: 'done', result: { ok: true, warnings: result.warnings, policy: rest } });
}
let next = 0;
const send = (): void => {
  parentPort!.postMessage(messages[next++]);
  if (next === messages.length) parentPort!.close();
};
parentPort!.on('message', send);
send();
