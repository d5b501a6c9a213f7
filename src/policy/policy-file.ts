/**
 * Reading one policy file (already parsed as YAML) into its RawPolicyFile: top-level keys,
 * defaults, networks, groups, rules and guardrails, each value checked on its own. Every problem
 * is recorded on the reader; nothing here throws or looks at other files.
 */
import { isScalar } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import type { YamlReader } from '../yaml/yaml-reader.js';
import { describe } from '../yaml/yaml-reader.js';
import { didYouMean } from '../yaml/suggest.js';
import { cidrInside, parseCidr } from '../net/cidr.js';
import type { CidrResult } from '../net/cidr.js';
import type { DefaultAction, Defaults, GroupDef, Mode, NetworkDef, PortRef, Protocol } from './policy-model.js';
import { NAME_RE, NAME_RULE_TEXT } from './names.js';
import type { RawGuardrailDeny, RawGuardrails, RawPolicyFile, RawRule } from './policy-raw.js';
import { checkPortNumber, readNameRefs, readRule } from './policy-rule.js';

export const TOP_LEVEL_KEYS = ['version', 'defaults', 'networks', 'groups', 'rules', 'guardrails'] as const;
const DEFAULTS_KEYS = ['mode', 'action', 'failsafe', 'egress'] as const;
const NETWORK_KEYS = ['cidrs', 'except'] as const;
const GROUP_KEYS = ['apps', 'labels', 'mode'] as const;
const GUARDRAIL_KEYS = ['sources', 'targets', 'deny'] as const;
const GUARDRAIL_DENY_KEYS = ['from', 'to'] as const;

export const EMPTY_FILE_MESSAGE =
  'the policy file is empty (nothing but blank lines or comments): an empty file is refused, because a file emptied by mistake ' +
  "would silently drop its rules (a policy without rules denies every managed port); write the policy, delete the file, or write 'version: 1' to keep it as a placeholder";

export const DEFAULT_FAILSAFE: readonly PortRef[] = [{ protocol: 'tcp', port: 22 }];

export function readPolicyFile(r: YamlReader, root: YamlNode | null): RawPolicyFile {
  const empty: RawPolicyFile = { file: r.file, defaults: undefined, networks: [], groups: [], rules: [], guardrails: undefined };
  if (root === null) {
    // A file emptied by mistake (a truncated write, `> file`) must not silently drop its rules on
    // a hot reload: a policy left without rules denies every managed port.
    r.error({ file: r.file, line: 1, col: 1 }, EMPTY_FILE_MESSAGE);
    return empty;
  }
  const top = r.mapping(root, 'the top level of a policy file', TOP_LEVEL_KEYS);
  if (!top) return empty;

  const version = top.get('version');
  if (version && !(isScalar(version.value) && version.value.value === 1)) {
    r.error(version.value, `unsupported policy format version: found ${describe(version.value)}, expected 1 (or leave 'version' out)`);
  }
  // A section left empty (`rules:` with everything below commented out) counts as empty.
  const section = (key: string) => {
    const e = top.get(key);
    return e && !isEmptyValue(e.value) ? e : undefined;
  };
  const defaultsEntry = top.get('defaults');
  const networksEntry = section('networks');
  const groupsEntry = section('groups');
  const rulesEntry = section('rules');
  const guardrailsEntry = top.get('guardrails');

  const defaultsValue = defaultsEntry
    ? isEmptyValue(defaultsEntry.value)
      ? { mode: 'enforce' as const, action: 'deny' as const, failsafe: DEFAULT_FAILSAFE, egress: true }
      : readDefaults(r, defaultsEntry.value)
    : undefined;
  const rules: RawRule[] = [];
  if (rulesEntry) {
    const items = r.list(rulesEntry.value, "'rules'", { allowEmpty: true });
    items?.forEach((item, i) => {
      const rule = readRule(r, item, i + 1);
      if (rule) rules.push(rule);
    });
  }
  return {
    file: r.file,
    defaults: defaultsEntry && defaultsValue ? { value: defaultsValue, at: r.at(defaultsEntry.keyNode) } : undefined,
    networks: networksEntry ? readNetworks(r, networksEntry.value) : [],
    groups: groupsEntry ? readGroups(r, groupsEntry.value) : [],
    rules,
    guardrails: guardrailsEntry ? readGuardrails(r, guardrailsEntry.value, guardrailsEntry.keyNode) : undefined,
  };
}

function readDefaults(r: YamlReader, node: YamlNode | null): Defaults | undefined {
  const m = r.mapping(node, "'defaults'", DEFAULTS_KEYS);
  if (!m) return undefined;
  let mode: Mode = 'enforce';
  let action: DefaultAction = 'deny';
  let failsafe: readonly PortRef[] = DEFAULT_FAILSAFE;
  const modeEntry = m.get('mode');
  if (modeEntry) mode = readMode(r, modeEntry.value, "'defaults.mode'") ?? mode;
  const actionEntry = m.get('action');
  if (actionEntry) {
    const v = r.string(actionEntry.value, "'defaults.action'");
    if (v === 'allow' || v === 'deny') action = v;
    else if (v !== undefined) {
      const hint = v === 'pass' ? " ('pass' only makes sense in a rule)" : didYouMean(v, ['allow', 'deny']);
      r.error(actionEntry.value, `unknown default action '${v}'${hint}; expected allow or deny`);
    }
  }
  const failsafeEntry = m.get('failsafe');
  if (failsafeEntry) {
    const items = r.list(failsafeEntry.value, "'defaults.failsafe'", { allowEmpty: true });
    if (items) {
      const refs: PortRef[] = [];
      for (const item of items) {
        const ref = readPortRef(r, item);
        if (ref && !refs.some((x) => x.protocol === ref.protocol && x.port === ref.port)) refs.push(ref);
      }
      refs.sort((a, b) => (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : a.port - b.port));
      failsafe = refs;
      if (items.length === 0) {
        r.warning(failsafeEntry.value, "'defaults.failsafe' is empty: nothing is exempt, so a policy mistake can lock you out of ssh; list at least tcp/22");
      }
    }
  }
  let egress = true;
  const egressEntry = m.get('egress');
  if (egressEntry) {
    const node = egressEntry.value;
    const v = isScalar(node) ? node.value : undefined;
    if (v === true || v === 'on') egress = true;
    else if (v === false || v === 'off') egress = false;
    else r.error(node, `'defaults.egress' must be on or off (per-app egress on the source host), found ${describe(node)}`);
  }
  return { mode, action, failsafe, egress };
}

/** `enforce` or `audit`; anything else is an error saying what to write (undefined then). */
function readMode(r: YamlReader, node: YamlNode | null, what: string, extra = ''): Mode | undefined {
  const v = r.string(node, what);
  if (v === 'enforce' || v === 'audit') return v;
  if (v !== undefined) r.error(node, `unknown mode '${v}'${didYouMean(v, ['enforce', 'audit'])}; expected enforce or audit${extra}`);
  return undefined;
}

function readPortRef(r: YamlReader, node: YamlNode | null): PortRef | undefined {
  const text = isScalar(node) && (typeof node.value === 'string' || typeof node.value === 'number') ? String(node.value) : undefined;
  const match = text === undefined ? null : /^(tcp|udp)\/([0-9]+)$/.exec(text.trim());
  if (!match) {
    const found = text !== undefined ? `'${text}'` : describe(node);
    r.error(node, `bad failsafe entry ${found}: write "protocol/port", like tcp/22 or udp/53`);
    return undefined;
  }
  const port = Number(match[2]);
  return checkPortNumber(r, node, port, "'defaults.failsafe'") ? { protocol: match[1] as Protocol, port } : undefined;
}

function checkDefinitionName(r: YamlReader, keyNode: YamlNode, name: string, kind: string): void {
  if (!NAME_RE.test(name)) r.error(keyNode, `invalid ${kind} name '${name}': ${NAME_RULE_TEXT}`);
}

function readNetworks(r: YamlReader, node: YamlNode | null): NetworkDef[] {
  const entries = r.anyMapping(node, "'networks' (network name: {cidrs: [...]})");
  const out: NetworkDef[] = [];
  for (const e of entries ?? []) {
    checkDefinitionName(r, e.keyNode, e.key, 'network');
    const what = `network '${e.key}'`;
    const m = r.mapping(e.value, what, NETWORK_KEYS);
    const at = r.at(e.keyNode);
    if (!m) {
      out.push({ name: e.key, cidrs: [], except: [], at });
      continue;
    }
    const cidrsEntry = m.get('cidrs');
    if (!cidrsEntry) r.error(e.keyNode, `${what} has no 'cidrs': list its addresses, like cidrs: [10.0.0.0/8, "fd00::/8"]`);
    const cidrs = cidrsEntry ? readCidrs(r, cidrsEntry.value, `'cidrs' of ${what}`) : [];
    const exceptEntry = m.get('except');
    const except = exceptEntry ? readCidrs(r, exceptEntry.value, `'except' of ${what}`) : [];
    for (const x of except) {
      if (!cidrs.some((c) => cidrInside(x.parsed, c.parsed))) {
        const list = cidrs.map((c) => c.parsed.canonical).join(', ');
        r.error(x.node, `'except' entry ${x.parsed.canonical} of ${what} is not inside any of its cidrs (${list}); an exception must be part of one of them`);
      }
    }
    out.push({ name: e.key, cidrs: unique(cidrs.map((c) => c.parsed.canonical)), except: unique(except.map((c) => c.parsed.canonical)), at });
  }
  return out;
}

type OkCidr = Extract<CidrResult, { ok: true }>;

function readCidrs(r: YamlReader, node: YamlNode | null, what: string): { parsed: OkCidr; node: YamlNode | null }[] {
  const items = r.list(node, what, { single: true });
  const out: { parsed: OkCidr; node: YamlNode | null }[] = [];
  for (const item of items ?? []) {
    const text = r.string(item, `each entry of ${what}`);
    if (text === undefined) continue;
    const parsed = parseCidr(text);
    if (parsed.ok) out.push({ parsed, node: item });
    else r.error(item, `${parsed.message} (in ${what})`);
  }
  return out;
}

function readGroups(r: YamlReader, node: YamlNode | null): GroupDef[] {
  const entries = r.anyMapping(node, "'groups' (group name: {apps: [...], labels: {...}})");
  const out: GroupDef[] = [];
  for (const e of entries ?? []) {
    checkDefinitionName(r, e.keyNode, e.key, 'group');
    const what = `group '${e.key}'`;
    const errorsBefore = r.diagnostics.length;
    const m = r.mapping(e.value, what, GROUP_KEYS);
    const at = r.at(e.keyNode);
    const apps: string[] = [];
    const seenApps = new Set<string>();
    const labels: Record<string, string> = {};
    const appsEntry = m?.get('apps');
    if (appsEntry) {
      for (const item of r.list(appsEntry.value, `'apps' of ${what}`, { single: true, allowEmpty: true }) ?? []) {
        const p = r.string(item, `each entry of 'apps' of ${what}`);
        if (p === undefined) continue;
        if (!p.startsWith('/')) r.error(item, `app pattern '${p}' of ${what} must start with '/' (Marathon app ids are absolute), e.g. '/${p}'`);
        else if (/\s/.test(p) || p.length === 1) r.error(item, `app pattern '${p}' of ${what} is not a valid Marathon app id pattern (no spaces; '/**' selects every app)`);
        else if (!seenApps.has(p)) {
          seenApps.add(p);
          apps.push(p);
        }
      }
    }
    const labelsEntry = m?.get('labels');
    if (labelsEntry) {
      for (const l of r.anyMapping(labelsEntry.value, `'labels' of ${what}`) ?? []) {
        const v = r.string(l.value, `label '${l.key}' of ${what} (Marathon label values are text)`);
        if (v !== undefined) labels[l.key] = v;
      }
    }
    const modeEntry = m?.get('mode');
    const mode = modeEntry && readMode(r, modeEntry.value, `'mode' of ${what}`, ` as the mode of ${what} (or leave 'mode' out: its apps follow defaults.mode)`);
    if (m && apps.length === 0 && Object.keys(labels).length === 0 && r.diagnostics.length === errorsBefore) {
      r.error(e.keyNode, `${what} selects nothing: give 'apps' (app id patterns like "/shop/web-*") and/or 'labels' (like {tier: frontend})`);
    }
    out.push({ name: e.key, apps, labels: sortRecord(labels), ...(mode ? { mode } : {}), at });
  }
  return out;
}

function isEmptyValue(node: YamlNode | null): boolean {
  return node === null || (isScalar(node) && node.value === null);
}

function readGuardrails(r: YamlReader, node: YamlNode | null, keyNode: YamlNode): RawGuardrails | undefined {
  if (isEmptyValue(node)) return { sources: null, targets: null, deny: [], at: r.at(keyNode) };
  const m = r.mapping(node, "'guardrails'", GUARDRAIL_KEYS);
  if (!m) return undefined;
  const sourcesEntry = m.get('sources');
  const targetsEntry = m.get('targets');
  const denyEntry = m.get('deny');
  const deny: RawGuardrailDeny[] = [];
  if (denyEntry) {
    const items = r.list(denyEntry.value, "'guardrails.deny'", { allowEmpty: true });
    items?.forEach((item, i) => {
      const what = `guardrails.deny entry #${i + 1}`;
      const d = r.mapping(item, what, GUARDRAIL_DENY_KEYS);
      if (!d) return;
      const from = d.get('from');
      const to = d.get('to');
      if (!from) r.error(item, `${what} has no 'from': name the group, network or any that labels may never open to 'to'`);
      if (!to) r.error(item, `${what} has no 'to': name the group(s) labels may never open`);
      deny.push({
        from: from ? readNameRefs(r, from.value, `'from' of ${what}`) : undefined,
        to: to ? readNameRefs(r, to.value, `'to' of ${what}`) : undefined,
        at: r.at(item),
      });
    });
  }
  return {
    sources: sourcesEntry ? readNameRefs(r, sourcesEntry.value, "'guardrails.sources'") : null,
    targets: targetsEntry ? readNameRefs(r, targetsEntry.value, "'guardrails.targets'") : null,
    deny,
    at: r.at(keyNode),
  };
}

function unique(list: readonly string[]): string[] {
  return [...new Set(list)];
}

function sortRecord(rec: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(rec).sort()) out[k] = rec[k]!;
  return out;
}
