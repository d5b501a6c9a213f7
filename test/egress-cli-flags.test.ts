/** `portcullis agent`'s per-app egress flags: bad values exit 2 with a precise message; --help documents them. */
import { describe, expect, it } from 'vitest';
import { runCli } from './support/run-cli.js';

describe('portcullis agent: egress flags', () => {
  it.each([
    [['--egress-unmapped', 'drop'], /--egress-unmapped must be host or deny, got 'drop'/],
    [['--mesos-poll-interval', '0'], /--mesos-poll-interval must be a number of seconds in 0.05..3600/],
    [['--mesos-agent', 'ftp://x'], /--mesos-agent must be an http:\/\/ or https:\/\/ URL or 'off'/],
    [['--mesos-agent', 'not a url'], /--mesos-agent must be an http:\/\/ or https:\/\/ URL/],
    [['--cgroups-root', '../etc'], /--cgroups-root '\.\.\/etc' must be a relative path/],
    [['--cgroups-root', 'a b'], /--cgroups-root 'a b' must be a relative path/],
    [['--docker-socket', 'run/docker.sock'], /--docker-socket must be an absolute path or 'none', got 'run\/docker.sock'/],
  ])('%j exits 2', async (flags, message) => {
    const r = await runCli(['agent', '--insecure', '--controller', 'c:7443', ...flags]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });

  it('--help documents them with their defaults', async () => {
    const r = await runCli(['agent', '--help']);
    expect(r.out).toMatch(/--mesos-agent URL .*http:\/\/127\.0\.0\.1:5051/s);
    expect(r.out).toMatch(/--mesos-poll-interval SECONDS\s+how often .*default 0\.25/s);
    expect(r.out).toMatch(/--cgroups-root PATH .*default mesos/s);
    expect(r.out).toMatch(/--docker-socket PATH\|none.*default \/var\/run\/docker\.sock.*'none'/s);
    expect(r.out).toMatch(/--egress-unmapped host\|deny.*'host' treats it host-level \(default\)/s);
  });
});
