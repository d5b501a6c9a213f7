/**
 * A fresh Consul API double and a client on it for every test of a file (beforeEach), and the
 * cleanups a test registers run before both are closed (afterEach).
 */
import { afterEach, beforeEach } from 'vitest';
import { ConsulClient } from '../../src/consul/consul-client.js';
import { ConsulDouble } from './consul-double.js';

export interface ConsulFixture {
  readonly consul: ConsulDouble;
  readonly client: ConsulClient;
  /** Run (all at once) after the test, before the client and the double close. */
  readonly stops: (() => Promise<void>)[];
}

export function consulFixture(): ConsulFixture {
  const stops: (() => Promise<void>)[] = [];
  const fixture = { stops } as { consul: ConsulDouble; client: ConsulClient; stops: (() => Promise<void>)[] };
  beforeEach(async () => {
    fixture.consul = new ConsulDouble();
    fixture.client = new ConsulClient({ url: await fixture.consul.start(), timeoutMs: 2_000 });
  });
  afterEach(async () => {
    await Promise.all(stops.splice(0).map((s) => s()));
    fixture.client.close();
    await fixture.consul.close();
  });
  return fixture;
}
