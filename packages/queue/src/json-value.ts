/**
 * What a job may carry: plain JSON, checked at the edges before anything recursive walks it. A
 * job is stored as JSON and handed back as JSON, so a value JSON cannot hold would be dropped or
 * changed on the way (a function or `undefined` in an array silently, NaN as `null`, a Date as a
 * string) or throw a bare `TypeError` (a BigInt) where a coded error was due. And the job's
 * validation, the token estimate and `JSON.stringify` all recurse: a request nested some thousands
 * deep (a tool's schema, say) overflowed the stack, a 500 from the gateway where a 400 was due.
 * Iterative, so the check cannot overflow itself. Real requests nest a few tens of levels at most.
 * Text (values and keys) must be valid Unicode: a lone surrogate is refused here, as the providers
 * refuse it, and a getter or Proxy that throws when read is named rather than let its error escape.
 */
import type { Issue } from './errors.js';

export const MAX_JSON_DEPTH = 128;

interface Step {
  key: string;
  parent: Step | undefined;
}

/**
 * The first place where `value` (an object or array; anything else is left to the schema) holds
 * what plain JSON cannot, or nests deeper than `max` levels (the value itself is level 1), with
 * its path (`tools.0.input_schema...`, at most 8 keys shown); undefined when it is plain JSON.
 * A key whose value is `undefined` is allowed: it is simply absent in JSON.
 */
export function jsonIssueAt(value: unknown, max = MAX_JSON_DEPTH): Issue | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const stack: [unknown, number, Step | undefined][] = [[value, 1, undefined]];
  while (stack.length > 0) {
    const [v, level, at] = stack.pop()!;
    const wrong = notJson(v);
    if (wrong) return { path: pathOf(at), message: wrong };
    if (v === null || typeof v !== 'object') continue;
    if (level > max) return { path: pathOf(at), message: `nests deeper than ${max} levels` };
    // Pushed last first, so the first issue in the document's order is the one named.
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], level + 1, { key: String(i), parent: at }]);
    } else {
      let entries: [string, unknown][];
      try {
        entries = Object.entries(v);
      } catch (err) {
        // A getter or a Proxy that throws: the job's own JSON.stringify would throw the same bare error.
        return { path: pathOf(at), message: `reading it threw: ${(err as Error)?.message ?? String(err)}` };
      }
      for (const [key] of entries) {
        const lone = loneSurrogateIn(key);
        if (lone) return { path: pathOf({ key: JSON.stringify(key).slice(1, -1), parent: at }), message: `this key ${lone}` };
      }
      for (let i = entries.length - 1; i >= 0; i--) {
        const [key, x] = entries[i]!;
        if (x !== undefined) stack.push([x, level + 1, { key, parent: at }]);
      }
    }
  }
  return undefined;
}

/** What kind of JSON value `value` is, for a message: `null`, `an array`, `an object`, or its type. */
export function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}

function notJson(v: unknown): string | undefined {
  switch (typeof v) {
    case 'bigint':
      return 'a BigInt is not JSON (send it as a string or a number)';
    case 'function':
    case 'symbol':
      return `a ${typeof v} is not JSON`;
    case 'undefined':
      return 'undefined is not JSON (in an array; use null)';
    case 'number':
      return Number.isFinite(v) ? undefined : `${v} is not JSON`;
    case 'string': {
      const lone = loneSurrogateIn(v);
      return lone && `this text ${lone}`;
    }
    case 'object': {
      if (v === null || Array.isArray(v)) return undefined;
      const proto: unknown = Object.getPrototypeOf(v);
      if (proto === Object.prototype || proto === null) return undefined;
      const name = (v as { constructor?: { name?: string } }).constructor?.name;
      return `${name ? `a ${name}` : 'this object'} is not plain JSON (send a string, a number or a plain object)`;
    }
    default:
      return undefined;
  }
}

const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();
/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * What is wrong with `s` when it holds a lone UTF-16 surrogate (half of an emoji cut in two, text
 * read from a file that is not UTF-8), else undefined. JSON.stringify writes one as `\ud800`, and
 * both providers' JSON parsers refuse the whole request for it (Anthropic: 400 "The request body
 * is not valid JSON: no low surrogate in string"): refused here, nothing is queued, no call is
 * paid for and the caller learns where. The check is native; the regex runs only to say where.
 */
function loneSurrogateIn(s: string): string | undefined {
  if (isWellFormed(s)) return undefined;
  const at = s.search(LONE_SURROGATE);
  const unit = s.charCodeAt(at).toString(16);
  return `holds a lone surrogate (\\u${unit} at character ${at}), which is not valid Unicode and which the providers refuse ("no low surrogate in string"): remove it or replace it (String.prototype.toWellFormed())`;
}

function pathOf(at: Step | undefined): string {
  const keys: string[] = [];
  for (let s = at; s; s = s.parent) keys.push(s.key);
  keys.reverse();
  return keys.length > 8 ? `${keys.slice(0, 8).join('.')}...` : keys.join('.');
}
