/**
 * Reading one rule (and the shared bits of guardrails) out of a policy file: names used as peers
 * or targets, port specs and protocols. References are only checked for shape here; parse-policy.ts
 * resolves them once every file is read.
 */
import { isScalar } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import type { YamlReader } from '../yaml/yaml-reader.js';
import { describe } from '../yaml/yaml-reader.js';
import { didYouMean } from '../yaml/suggest.js';
import type { PortSpec, Protocol, RuleAction } from './policy-model.js';
import type { SourceLocation } from '../diagnostic.js';
import { NAME_RE, NAME_RULE_TEXT, PORT_NAME_RE, PORT_NAME_RULE_TEXT } from './names.js';
import type { NameRef, RawRule } from './policy-raw.js';

export const RULE_KEYS = ['name', 'from', 'to', 'ports', 'protocol', 'action'] as const;
const ACTIONS: readonly RuleAction[] = ['allow', 'deny', 'pass'];
const PROTOCOL_NAMES: readonly Protocol[] = ['tcp', 'udp'];

export function readRule(r: YamlReader, node: YamlNode | null, index: number): RawRule | undefined {
  const where = `rule #${index}`;
  const m = r.mapping(node, where, RULE_KEYS);
  if (!m) return undefined;
  const at = r.at(node);

  let name: string | undefined;
  const nameEntry = m.get('name');
  if (nameEntry) {
    const n = r.string(nameEntry.value, `'name' of ${where}`);
    if (n !== undefined && !NAME_RE.test(n)) {
      r.error(nameEntry.value, `invalid rule name '${n}': ${NAME_RULE_TEXT}`);
    } else {
      name = n;
    }
  }
  const label = name === undefined ? where : `rule '${name}'`;

  const fromEntry = m.get('from');
  const toEntry = m.get('to');
  if (!fromEntry) r.error(node, `${label} has no 'from': say where traffic comes from (a group, a network, or any)`);
  if (!toEntry) r.error(node, `${label} has no 'to': say which group(s) of apps the rule protects`);
  const from = fromEntry ? readNameRefs(r, fromEntry.value, `'from' of ${label}`) : undefined;
  const to = toEntry ? readNameRefs(r, toEntry.value, `'to' of ${label}`) : undefined;

  let ports: PortSpec[] | undefined = [];
  const portSites: SourceLocation[] = [];
  const portsEntry = m.get('ports');
  if (portsEntry) {
    const items = r.list(portsEntry.value, `'ports' of ${label} (omit 'ports' to cover every port)`, { single: true });
    if (!items) ports = undefined;
    for (const item of items ?? []) {
      const spec = readPortSpec(r, item, label);
      if (spec === undefined) ports = undefined;
      else if (ports) {
        ports.push(spec);
        portSites.push(r.at(item));
      }
    }
  }

  let protocols: Protocol[] | null | undefined = null;
  let protocolAt: SourceLocation | undefined;
  const protoEntry = m.get('protocol');
  if (protoEntry) {
    protocolAt = r.at(protoEntry.value, r.at(protoEntry.keyNode));
    protocols = readProtocols(r, protoEntry.value, `'protocol' of ${label}`);
  }

  let action: RuleAction | undefined;
  const actionEntry = m.get('action');
  if (!actionEntry) {
    r.error(node, `${label} has no 'action': add 'action: allow', 'action: deny' or 'action: pass'`);
  } else {
    const a = r.string(actionEntry.value, `'action' of ${label}`);
    if (a !== undefined) {
      if ((ACTIONS as readonly string[]).includes(a)) action = a as RuleAction;
      else r.error(actionEntry.value, `unknown action '${a}' in ${label}${didYouMean(a, ACTIONS)}; expected one of: allow, deny, pass`);
    }
  }

  return { name, index, from, to, ports, portSites, protocols, protocolAt, action, at };
}

/** A name or a list of names (group, network, or `any`); only the shape is checked here. */
export function readNameRefs(r: YamlReader, node: YamlNode | null, what: string): NameRef[] | undefined {
  const items = r.list(node, what, { single: true });
  if (!items) return undefined;
  const out: NameRef[] = [];
  const seen = new Set<string>();
  let ok = true;
  for (const item of items) {
    const name = r.string(item, `each entry of ${what}`);
    if (name === undefined) {
      ok = false;
      continue;
    }
    if (!seen.has(name)) {
      seen.add(name);
      out.push({ name, at: r.at(item) });
    }
  }
  return ok ? out : undefined;
}

/** `tcp`, `udp`, or a list of them; returned sorted and without duplicates. */
export function readProtocols(r: YamlReader, node: YamlNode | null, what: string): Protocol[] | undefined {
  const items = r.list(node, what, { single: true });
  if (!items) return undefined;
  const out = new Set<Protocol>();
  let ok = true;
  for (const item of items) {
    const p = r.string(item, what);
    if (p === undefined) {
      ok = false;
    } else if ((PROTOCOL_NAMES as readonly string[]).includes(p)) {
      out.add(p as Protocol);
    } else {
      r.error(item, `unknown protocol '${p}' in ${what}${didYouMean(p, PROTOCOL_NAMES)}; expected tcp, udp or [tcp, udp]`);
      ok = false;
    }
  }
  return ok ? PROTOCOL_NAMES.filter((p) => out.has(p)) : undefined;
}

export function checkPortNumber(r: YamlReader, node: YamlNode | null, n: number, what: string): boolean {
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    r.error(node, `port ${n} in ${what} is out of range: ports are whole numbers from 1 to 65535`);
    return false;
  }
  return true;
}

/** A number, an `a-b` range, or a port name. */
function readPortSpec(r: YamlReader, node: YamlNode | null, label: string): PortSpec | undefined {
  const what = `'ports' of ${label}`;
  if (isScalar(node) && typeof node.value === 'number') {
    return checkPortNumber(r, node, node.value, what) ? { kind: 'number', port: node.value } : undefined;
  }
  if (!isScalar(node) || typeof node.value !== 'string') {
    r.error(node, `each entry of ${what} must be a port number, a range like 9000-9100 or a port name, found ${describe(node)}`);
    return undefined;
  }
  const text = node.value.trim();
  if (/^[0-9]+$/.test(text)) {
    return checkPortNumber(r, node, Number(text), what) ? { kind: 'number', port: Number(text) } : undefined;
  }
  const range = /^([0-9]+)-([0-9]+)$/.exec(text);
  if (range) {
    const a = Number(range[1]);
    const b = Number(range[2]);
    if (!checkPortNumber(r, node, a, what) || !checkPortNumber(r, node, b, what)) return undefined;
    if (a > b) {
      r.error(node, `reversed port range '${text}' in ${what}: the first port must not be above the last; write '${b}-${a}'`);
      return undefined;
    }
    return a === b ? { kind: 'number', port: a } : { kind: 'range', from: a, to: b };
  }
  if (/^[0-9\s.:-]+$/.test(text)) {
    r.error(node, `bad port range '${text}' in ${what}: write a range as two ports joined by '-', like 9000-9100`);
    return undefined;
  }
  if (!PORT_NAME_RE.test(text)) {
    r.error(node, `invalid port name '${text}' in ${what}: ${PORT_NAME_RULE_TEXT}`);
    return undefined;
  }
  return { kind: 'name', name: text };
}
