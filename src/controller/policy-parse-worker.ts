/**
 * Worker thread entry of src/controller/policy-parser.ts: parses one policy (its files' texts in
 * `workerData`) within the limits and posts the ParseResult back. Nothing else runs here.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { PolicyFileText } from '../policy/parse-policy.js';
import { parsePolicyWithin, type PolicyLimits } from '../policy/policy-limits.js';

const job = workerData as { path: string; files: PolicyFileText[]; limits: PolicyLimits };
parentPort!.postMessage(parsePolicyWithin(job.path, job.files, job.limits));
