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

  it('refuses a lone surrogate in any text or key, naming where (the providers refuse the whole request for one)', () => {
    const lone = (unit: string, at: number) => `holds a lone surrogate (\\u${unit} at character ${at}), which is not valid Unicode and which the providers refuse ("no low surrogate in string"): remove it or replace it (String.prototype.toWellFormed())`;
    expect(jsonIssueAt({ messages: [{ role: 'user', content: 'hi \ud800 there' }] })).toEqual({ path: 'messages.0.content', message: `this text ${lone('d800', 3)}` });
    expect(jsonIssueAt({ list: ['ok', 'x\udfff'] })).toEqual({ path: 'list.1', message: `this text ${lone('dfff', 1)}` });
    // A high surrogate at the very end (an emoji cut in two by a length limit).
    expect(jsonIssueAt({ t: 'cut \ud83d' })).toEqual({ path: 't', message: `this text ${lone('d83d', 4)}` });
    expect(jsonIssueAt({ metadata: { 'k\udc00': 1 } })).toEqual({ path: 'metadata.k\\udc00', message: `this key ${lone('dc00', 1)}` });
    // Whole pairs (an emoji) are text like any other.
    expect(jsonIssueAt({ t: 'ok \ud83d\ude00 fine', '\ud83d\ude00': 'key' })).toBeUndefined();
  });

  it('names a getter or a Proxy that throws when read, rather than letting its error escape', () => {
    const getter = { get boom(): unknown { throw new Error('not today'); } };
    expect(jsonIssueAt({ metadata: { inner: getter } })).toEqual({ path: 'metadata.inner', message: 'reading it threw: not today' });
    const proxy = new Proxy({}, { ownKeys() { throw new Error('no keys'); } });
    expect(jsonIssueAt({ metadata: proxy })).toEqual({ path: 'metadata', message: 'reading it threw: no keys' });
  });
});
