/**
 * The version of a DesiredState: a content hash of {mode, sets}, so two controller replicas that
 * compile the same input name the same state with the same version, and an agent can tell
 * whether what it applied is what the controller wants.
 *
 * Canonical serialisation: `portcullis-state-v1`, the mode, then for each kind in SET_KINDS order
 * a line `#<kind> <count>` followed by one line per member, as given (the compiler sorts and
 * deduplicates them); every line ends with '\n'. Members never contain a newline (their formats
 * are fixed, see desired-state.ts) and the counts make the framing unambiguous anyway.
 * sha256, the first 16 lowercase hex characters. (Plain joins: this runs over millions of members;
 * the incremental compiler passes the texts of the lists it patched, see member-lists.ts.)
 */
import { createHash } from 'node:crypto';
import type { Mode } from '../policy/policy-model.js';
import { SET_KINDS, type SetContents, type SetKind } from './desired-state.js';
import { memberListText } from './member-lists.js';

/** `texts`: the text (memberListText) of some of the lists, when the caller has it already. */
export function stateVersion(mode: Mode, sets: SetContents, texts?: Partial<Record<SetKind, string>>): string {
  const hash = createHash('sha256').update(`portcullis-state-v1\n${mode}\n`);
  for (const kind of SET_KINDS) {
    const members = sets[kind];
    hash.update(`#${kind} ${members.length}\n`);
    if (members.length > 0) hash.update(texts?.[kind] ?? memberListText(members));
  }
  return hash.digest('hex').slice(0, 16);
}
