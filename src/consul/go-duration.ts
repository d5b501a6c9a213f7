/**
 * Go duration text ("0", "150ms", "10s", "1m30s"; units ns, us, µs, ms, s, m, h), the form in
 * which Consul takes and gives `wait`, session TTLs, lock delays and check intervals. Pure.
 */
const UNIT_MS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or undefined when `s` is not a Go duration (signs are not accepted). */
export function goDurationMs(s: string): number | undefined {
  if (s === '0') return 0;
  if (s.length > 64) return undefined;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < s.length) {
    re.lastIndex = at;
    const m = re.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    at = re.lastIndex;
  }
  return at === 0 ? undefined : total;
}
