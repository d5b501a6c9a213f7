/**
 * A Suggestion (suggest.ts) as YAML in the policy's own format: `groups:`, `networks:` and
 * `rules:` sections to paste into the policy (or one file to save beside its files, sorted after
 * them), each rule preceded by a comment with its evidence, then what was not suggested and why.
 *
 * Untrusted text (app ids, host ids, reasons naming them) never breaks out of its place: values
 * are YAML double-quoted scalars (JSON string syntax, with line and paragraph separators and
 * bidirectional controls escaped too), comment text has every control character escaped, so a
 * host id with a newline cannot start a YAML line of its own.
 */
import { escapeUnprintable } from '../diagnostic.js';
import { NAME_RE, PORT_NAME_RE } from '../policy/names.js';
import type { Evidence, Suggestion } from './suggest.js';

/** A YAML double-quoted scalar of any text. */
export function yamlString(text: string): string {
  return JSON.stringify(text).replace(/[\u0085\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Text for a YAML comment: one line, whatever it holds. */
export function commentText(text: string): string {
  return escapeUnprintable(text, false);
}

const name = (n: string) => (NAME_RE.test(n) ? n : yamlString(n));

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function evidenceText(e: Evidence): string {
  return `${plural(e.connections, 'connection')} (${e.verdicts.join(', ')}), ${e.bytes} bytes, ${plural(e.flows, 'flow')}; first seen ${e.firstSeen}, last seen ${e.lastSeen}; hosts ${e.hosts.join(', ') || '-'}`;
}

export interface SuggestYamlOptions {
  /** What the rules were suggested against, for the header (e.g. the policy path). */
  readonly policy?: string;
  readonly verdicts?: readonly string[];
}

export function suggestionYaml(s: Suggestion, options: SuggestYamlOptions = {}): string {
  const out: string[] = [];
  const total = s.rules.reduce((n, r) => n + r.evidence.connections, 0);
  const against = options.policy !== undefined ? ` not allowed by ${commentText(options.policy)}` : ' not allowed by the policy';
  const verdicts = options.verdicts !== undefined ? ` (recorded ${commentText(options.verdicts.join(', '))})` : '';
  if (s.rules.length === 0) {
    out.push(`# portcullis suggest: nothing to suggest: no recorded flow${verdicts} is${against} and fixable by a rule`);
  } else {
    const of = s.leftOut !== undefined && s.leftOut.rules > 0 ? ` (the first by connections of ${s.rules.length + s.leftOut.rules})` : '';
    out.push(`# portcullis suggest: ${plural(s.rules.length, 'rule')}${of} for ${plural(total, 'connection')}${verdicts}${against}.`);
    out.push('# Paste the groups under groups:, the networks under networks: and the rules at the END of');
    out.push('# rules: (first match wins), or save this as a policy file sorted after the others');
    out.push('# (e.g. 99-suggested.yaml); then run portcullis check.');
  }
  if (s.leftOut !== undefined && s.leftOut.rules > 0) {
    const o = s.leftOut;
    out.push(`# LEFT OUT: ${plural(o.rules, 'more rule')} for ${plural(o.connections, 'connection')} (${o.bytes} bytes, ${plural(o.flows, 'flow')}), none with more`);
    out.push('# connections than the last rule below; `portcullis suggest --top 0` prints them all (or narrow with --since, --verdict).');
  }
  if (s.allowedNow > 0) out.push(`# ${plural(s.allowedNow, 'flow')} of those verdicts the policy allows now: nothing to add for them.`);
  if (s.coveredByEgress > 0) out.push(`# ${plural(s.coveredByEgress, 'ingress flow')} left to the egress flows of the same connections (they name the source app).`);
  const section = (key: string, comment: string, entries: readonly { name: string; field: string; values: readonly string[] }[]) => {
    if (entries.length === 0) return;
    out.push(`${key}:`);
    for (const e of entries) out.push(`  # ${comment}`, `  ${name(e.name)}:`, `    ${e.field}: [${e.values.map(yamlString).join(', ')}]`);
  };
  section('groups', 'proposed: exactly the apps seen', s.groups.map((g) => ({ name: g.name, field: 'apps', values: g.apps })));
  section('networks', 'proposed: exactly the addresses seen', s.networks.map((n) => ({ name: n.name, field: 'cidrs', values: n.cidrs })));
  if (s.rules.length > 0) {
    out.push('rules:');
    for (const r of s.rules) {
      out.push(`  # ${commentText(evidenceText(r.evidence))}`);
      out.push(`  - name: ${name(r.name)}`);
      out.push(`    from: ${name(r.from)}`);
      out.push(`    to: ${name(r.to)}`);
      out.push(`    ports: [${typeof r.port === 'number' ? r.port : PORT_NAME_RE.test(r.port) ? r.port : yamlString(r.port)}]`);
      if (r.protocol !== undefined) out.push(`    protocol: ${r.protocol}`);
      out.push('    action: allow');
    }
  }
  if (s.skipped.length > 0) {
    out.push('# not suggested:');
    for (const k of s.skipped) out.push(`#   ${commentText(`${plural(k.connections, 'connection')} (${plural(k.flows, 'flow')}): ${k.reason}`)}`);
  }
  return `${out.join('\n')}\n`;
}
