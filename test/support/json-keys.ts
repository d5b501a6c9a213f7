/**
 * Keys that appear more than once in one object of a JSON text. JSON.parse silently keeps the
 * last of repeated keys, so a check on parsed lines cannot see them; this reads the raw text.
 */
export function repeatedKeys(text: string): string[] {
  const repeated: string[] = [];
  let i = 0;
  const ws = (): void => {
    while (i < text.length && /\s/.test(text[i] as string)) i++;
  };
  const str = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (depth: number): void => {
    if (depth > 100) throw new Error('JSON nested too deep for repeatedKeys');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      for (ws(); text[i] !== '}' && i < text.length; ws()) {
        const key = str();
        if (seen.has(key)) repeated.push(key);
        seen.add(key);
        ws();
        i++; // ':'
        value(depth + 1);
        ws();
        if (text[i] === ',') i++;
      }
      i++;
    } else if (c === '[') {
      i++;
      for (ws(); text[i] !== ']' && i < text.length; ws()) {
        value(depth + 1);
        ws();
        if (text[i] === ',') i++;
      }
      i++;
    } else if (c === '"') {
      str();
    } else {
      while (i < text.length && !/[,}\]\s]/.test(text[i] as string)) i++;
    }
  };
  JSON.parse(text); // valid JSON first, so the scan below never runs off malformed text
  value(0);
  return repeated;
}
