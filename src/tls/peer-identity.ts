/**
 * The names a client certificate vouches for: its subject CN, its DNS subjectAltNames and its
 * IP subjectAltNames. The Sync service accepts a Hello only when its host_id is one of them, so
 * an agent can obtain no host's state but its own.
 *
 * Node renders subjectAltName as `DNS:a, DNS:b, IP Address:10.0.0.1`; a value holding a comma
 * or quote is JSON-quoted (`DNS:"a,b"`), which this parser honours rather than splitting on it.
 */
import type { PeerCertificate } from 'node:tls';

const SAN_ENTRY = String.raw`([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)`;

/** Parsed subjectAltName entries of the types we use, in order. */
export function parseSubjectAltName(text: string | undefined): { type: string; value: string }[] {
  if (!text) return [];
  const out: { type: string; value: string }[] = [];
  const pattern = new RegExp(SAN_ENTRY, 'gy');
  for (let match = pattern.exec(text); match !== null && match[0] !== ''; match = pattern.exec(text)) {
    const type = match[1] ?? '';
    const raw = match[2] ?? '';
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        continue;
      }
    }
    out.push({ type, value });
  }
  return out;
}

/** CN (all of them if repeated), then DNS and IP subjectAltNames; deduplicated. */
export function certificateIdentities(cert: PeerCertificate | undefined): string[] {
  if (!cert) return [];
  const names: string[] = [];
  const cn: unknown = cert.subject?.CN;
  if (typeof cn === 'string') names.push(cn);
  else if (Array.isArray(cn)) names.push(...cn.filter((v): v is string => typeof v === 'string'));
  for (const { type, value } of parseSubjectAltName(cert.subjectaltname)) {
    if (type === 'DNS' || type === 'IP Address') names.push(value);
  }
  return [...new Set(names.filter((n) => n !== ''))];
}
