import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, jsonIssueAt } from './json-value.js';

const nested = (levels: number): unknown => {
  let v: unknown = {};
  for (let i = 1; i < levels; i++) v = { a: v };
  return v;
};
const depth = (path: string) => ({ path, message: `nests deeper than ${MAX_JSON_DEPTH} levels` });

describe('jsonIssueAt', () => {
  it('passes a value exactly MAX_JSON_DEPTH levels deep and names where one level more goes', () => {
    expect(jsonIssueAt(nested(MAX_JSON_DEPTH))).toBeUndefined();
    expect(jsonIssueAt(nested(MAX_JSON_DEPTH + 1))).toEqual(depth('a.a.a.a.a.a.a.a...'));
    expect(jsonIssueAt({ ok: [1, 'x', null], deep: { list: [nested(3)] } }, 4)).toEqual({ path: 'deep.list.0.a', message: 'nests deeper than 4 levels' });
    expect(jsonIssueAt({ ok: [1, 'x', null], deep: { list: [nested(1)] } }, 4)).toBeUndefined();
    expect(jsonIssueAt([[[]]], 2)).toEqual({ path: '0.0', message: 'nests deeper than 2 levels' });
  });

  it('walks a value nested far past where recursion overflows the stack, and a cyclic one', () => {
    let v: unknown = [];
    for (let i = 0; i < 200_000; i++) v = [v];
    expect(jsonIssueAt(v)).toEqual(depth('0.0.0.0.0.0.0.0...'));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(jsonIssueAt({ metadata: cyclic })).toEqual(depth('metadata.self.self.self.self.self.self.self...'));
  });

  it('names what JSON cannot hold, first in document order', () => {
    expect(jsonIssueAt({ a: 1, metadata: { n: 10n, f: () => 1 } })).toEqual({ path: 'metadata.n', message: 'a BigInt is not JSON (send it as a string or a number)' });
    expect(jsonIssueAt({ metadata: { f: () => 1 } })?.message).toBe('a function is not JSON');
    expect(jsonIssueAt({ list: [1, undefined] })).toEqual({ path: 'list.1', message: 'undefined is not JSON (in an array; use null)' });
    expect(jsonIssueAt({ t: Number.NaN })).toEqual({ path: 't', message: 'NaN is not JSON' });
    expect(jsonIssueAt({ t: Number.POSITIVE_INFINITY })?.message).toBe('Infinity is not JSON');
    expect(jsonIssueAt({ at: new Date(0) })).toEqual({ path: 'at', message: 'a Date is not plain JSON (send a string, a number or a plain object)' });
    expect(jsonIssueAt({ m: new Map() })?.message).toMatch(/^a Map is not plain JSON/);
  });

  it('takes plain JSON, absent keys (undefined) and prototype-free objects; leaves a non-object to the schema', () => {
    expect(jsonIssueAt({ a: [1, 'x', true, null, { b: -0.5 }], gone: undefined, bare: Object.create(null) as object })).toBeUndefined();
    for (const v of [null, 1, 'x', true, undefined, 10n]) expect(jsonIssueAt(v)).toBeUndefined();
  });
});
