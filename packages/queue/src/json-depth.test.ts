import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, tooDeepAt } from './json-depth.js';

const nested = (levels: number, key = 'a'): unknown => {
  let v: unknown = {};
  for (let i = 1; i < levels; i++) v = { [key]: v };
  return v;
};

describe('tooDeepAt', () => {
  it('passes a value exactly MAX_JSON_DEPTH levels deep and names where one level more goes', () => {
    expect(tooDeepAt(nested(MAX_JSON_DEPTH))).toBeUndefined();
    expect(tooDeepAt(nested(MAX_JSON_DEPTH + 1))).toBe('a.a.a.a.a.a.a.a...');
    expect(tooDeepAt({ ok: [1, 'x', null], deep: { list: [nested(3)] } }, 4)).toBe('deep.list.0.a');
    expect(tooDeepAt({ ok: [1, 'x', null], deep: { list: [nested(1)] } }, 4)).toBeUndefined();
  });

  it('counts arrays as levels and leaves primitives alone', () => {
    expect(tooDeepAt([[[]]], 2)).toBe('0.0');
    for (const v of [null, 1, 'x', true, undefined]) expect(tooDeepAt(v, 1)).toBeUndefined();
  });

  it('walks a value nested far past where recursion overflows the stack', () => {
    let v: unknown = [];
    for (let i = 0; i < 200_000; i++) v = [v];
    expect(tooDeepAt(v)).toMatch(/^0\.0\.0\.0\.0\.0\.0\.0\.\.\.$/);
  });
});
