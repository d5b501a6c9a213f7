/**
 * How deeply lists and mappings nest in a YAML file, measured on the `yaml` package's CST (its
 * Parser keeps an explicit stack, so it reads any depth) before the Composer builds nodes: the
 * Composer recurses once per level and overflows the stack near 800 levels. The overflow is
 * caught inside `yaml` (reported as "Maximum call stack size exceeded" at a random column), but
 * parsing such a text twice in one process was seen to kill it (FATAL ERROR: RegExpCompiler
 * Allocation failed, in plain node and in the fuzz suite's worker; the controller survived the
 * edits we tried). Policy and inventory files nest 5 levels deep; anything past
 * MAX_NESTING is refused before it is composed. Iterative, so the check itself cannot overflow.
 */
import type { CST } from 'yaml';

export const MAX_NESTING = 64;

/** Offset of the first collection nested deeper than `max` levels, or undefined. */
export function tooDeepAt(tokens: readonly CST.Token[], max = MAX_NESTING): number | undefined {
  const stack: { token: CST.Token | null | undefined; depth: number }[] = tokens.map((token) => ({ token, depth: 0 }));
  while (stack.length > 0) {
    const { token, depth } = stack.pop()!;
    if (!token) continue;
    if (token.type === 'document') {
      stack.push({ token: token.value, depth });
      continue;
    }
    if (token.type !== 'block-map' && token.type !== 'block-seq' && token.type !== 'flow-collection') continue;
    if (depth + 1 > max) return token.offset;
    for (const item of token.items) {
      if ('key' in item) stack.push({ token: item.key, depth: depth + 1 });
      stack.push({ token: item.value, depth: depth + 1 });
    }
  }
  return undefined;
}
