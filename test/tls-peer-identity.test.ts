import type { PeerCertificate } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { certificateIdentities, parseSubjectAltName } from '../src/tls/peer-identity.js';

const cert = (subject: object, subjectaltname?: string) => ({ subject, subjectaltname }) as unknown as PeerCertificate;

describe('certificate identities', () => {
  it.each([
    ['CN only', cert({ CN: 'host-a' }), ['host-a']],
    ['CN and SANs', cert({ CN: 'host-a' }, 'DNS:host-a, DNS:a.example, IP Address:10.0.0.1'), ['host-a', 'a.example', '10.0.0.1']],
    ['repeated CN', cert({ CN: ['x', 'y'] }), ['x', 'y']],
    ['URI and email ignored', cert({}, 'URI:spiffe://x/y, email:a@b, DNS:h'), ['h']],
    ['quoted value with a comma stays whole', cert({}, 'DNS:"a,b", DNS:c'), ['a,b', 'c']],
    ['nothing', undefined, []],
  ])('%s', (_label, input, expected) => {
    expect(certificateIdentities(input)).toEqual(expected);
  });

  it('parses IPv6 SANs', () => {
    expect(parseSubjectAltName('IP Address:::1, DNS:localhost')).toEqual([
      { type: 'IP Address', value: '::1' },
      { type: 'DNS', value: 'localhost' },
    ]);
  });
});
