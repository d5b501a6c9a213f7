/**
 * Which member form each set kind holds (the forms and their scanners are src/net/member-syntax.ts),
 * and the one message of an invalid member. See the member formats in src/compile/desired-state.ts.
 */
import type { SetKind } from '../compile/desired-state.js';
import { memberFormError, memberTextError, type MemberForm } from '../net/member-syntax.js';

const FORM_OF_KIND: ReadonlyMap<string, MemberForm> = new Map<SetKind, MemberForm>([
  ['managed-tcp', 'port'],
  ['managed-udp', 'port'],
  ['failsafe-tcp', 'port'],
  ['failsafe-udp', 'port'],
  ['allow-ip4', 'ip4'],
  ['allow-net4', 'net4'],
  ['allow-ip6', 'ip6'],
  ['allow-net6', 'net6'],
  ['egress-task', 'egress-task'],
  ['egress-managed4', 'ip4'],
  ['egress-managed6', 'ip6'],
  ['egress-ip4', 'egress-ip4'],
  ['egress-ip6', 'egress-ip6'],
  ['audit-tcp', 'port'],
  ['audit-udp', 'port'],
  ['egress-audit', 'app-id'],
]);

/** Error text when `member` is not a well-formed member of `kind`; undefined when it is. */
export function validateMember(kind: SetKind, member: string): string | undefined {
  const form = FORM_OF_KIND.get(kind);
  const error = form === undefined ? (memberTextError(member) ?? `unknown set kind ${JSON.stringify(kind)}`) : memberFormError(form, member);
  return error === undefined ? undefined : `invalid ${kind} member ${JSON.stringify(member)}: ${error}`;
}
