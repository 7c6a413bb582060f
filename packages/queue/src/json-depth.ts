/**
 * How deep a JSON value nests, checked at the edges before anything recursive walks it: the job's
 * validation, the token estimate and `JSON.stringify` all recurse, and a request nested some
 * thousands deep (a tool's schema, say) overflowed the stack, a 500 where a 400 was due.
 * Iterative, so the check cannot overflow itself. Real requests nest a few tens of levels at most.
 */
export const MAX_JSON_DEPTH = 128;

interface Step {
  key: string;
  parent: Step | undefined;
}

/**
 * Where `value` first nests deeper than `max` levels (the value itself is level 1), as a path
 * (`tools.0.input_schema...`, at most 8 keys shown), or undefined when it does not.
 */
export function tooDeepAt(value: unknown, max = MAX_JSON_DEPTH): string | undefined {
  const stack: [unknown, number, Step | undefined][] = [[value, 1, undefined]];
  while (stack.length > 0) {
    const [v, level, at] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (level > max) return pathOf(at);
    const entries: [string, unknown][] = Array.isArray(v) ? v.map((x, i) => [String(i), x]) : Object.entries(v);
    for (const [key, x] of entries) {
      if (x !== null && typeof x === 'object') stack.push([x, level + 1, { key, parent: at }]);
    }
  }
  return undefined;
}

function pathOf(at: Step | undefined): string {
  const keys: string[] = [];
  for (let s = at; s; s = s.parent) keys.push(s.key);
  keys.reverse();
  return keys.length > 8 ? `${keys.slice(0, 8).join('.')}...` : keys.join('.');
}
