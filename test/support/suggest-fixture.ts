/** The adoption fixture of the suggest tests (test/fixtures/flows-suggest: an audit-mode policy and its cluster), loaded. */
import { join } from 'node:path';
import { loadInventoryInput, loadPolicyInput } from '../../src/cli/load-inputs.js';
import type { ClusterState } from '../../src/inventory/cluster-state.js';
import type { Policy } from '../../src/policy/policy-model.js';
import { ROOT } from './built-cli.js';

export const SUGGEST_FIXTURE = join(ROOT, 'test/fixtures/flows-suggest');

export async function loadSuggestFixture(): Promise<{ readonly policy: Policy; readonly cluster: ClusterState }> {
  const p = await loadPolicyInput(join(SUGGEST_FIXTURE, 'policy'));
  const c = await loadInventoryInput(join(SUGGEST_FIXTURE, 'inventory.yaml'));
  if (!p.ok || !c.ok) throw new Error('fixture does not load');
  return { policy: p.loaded.policy, cluster: c.loaded.cluster };
}
