/**
 * Marathon's app id grammar, and a once-per-id warning for ids that do not follow it.
 *
 * Marathon validates every id it accepts (PathId.scala, `ID_PATH_SEGMENT_PATTERN`, the same rule
 * as `PathId` in its RAML types): an absolute id is `/`-separated segments, each made of
 * `.`-separated labels of lowercase letters, digits and `-` that start and end with a letter or
 * a digit (`/shop/web`, `/prod/api.v2/db-1`). So an id holding `;`, `$(`, a space, a newline or a
 * control character never came from a healthy Marathon: a proxy, a fork or an attacker made it.
 * Portcullis does not trust ids anyway — they are map keys and label text, compared byte for
 * byte; the compiler never puts them into a set name, a rule or a command, so they never reach
 * the kernel — but an operator should hear about such an id once, not on every re-list.
 */
import type { Logger } from 'pino';
import { preview } from './json-guards.js';

const LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/** True when `id` is an absolute app id Marathon could have produced. Linear time. */
export function isMarathonAppId(id: string): boolean {
  if (!id.startsWith('/') || id.length < 2) return false;
  return id
    .slice(1)
    .split('/')
    .every((segment) => segment.split('.').every((label) => LABEL.test(label)));
}

/** At most this many distinct unusual ids are remembered (and logged); later ones are counted. */
const MAX_REMEMBERED = 1000;

export class UnusualAppIds {
  private readonly seen = new Set<string>();
  private overflowLogged = false;

  constructor(private readonly log: Logger) {}

  /** Logs (warn, once per id) every id in `ids` that Marathon could not have produced. */
  check(ids: Iterable<string>): void {
    for (const id of ids) {
      if (isMarathonAppId(id)) continue;
      const key = id.length <= 512 ? id : `${id.slice(0, 512)}…${id.length}`;
      if (this.seen.has(key)) continue;
      if (this.seen.size >= MAX_REMEMBERED) {
        if (!this.overflowLogged) this.log.warn({ remembered: MAX_REMEMBERED }, 'more app ids Marathon could never produce; no longer logged one by one');
        this.overflowLogged = true;
        continue;
      }
      this.seen.add(key);
      this.log.warn(
        { appIdPreview: preview(id, 200), length: id.length },
        'app id that Marathon could never produce (its ids are /-separated lowercase letters, digits, "-" and "."): kept as an opaque id; it never reaches the kernel',
      );
    }
  }
}
