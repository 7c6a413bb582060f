import { describe, expect, it } from 'vitest';
import { PromptCache } from './prompt-cache.js';
import type { Segment } from './prompt-tokens.js';

const seg = (material: string, tokens: number, breakpoint = false): Segment => ({
  material,
  tokens,
  breakpointTtlMs: breakpoint ? 300_000 : null,
});

describe('PromptCache', () => {
  const prompt = [seg('tools', 100), seg('system', 900, true), seg('history', 500, true), seg('question', 20)];
  const total = 1520 + 3;

  it('writes the prefix up to the last breakpoint the first time, and reads it after', () => {
    const cache = new PromptCache();
    const first = cache.plan('key:model', prompt, total, 0);
    expect(first).toMatchObject({ input: 23, cacheCreation: 1500, cacheRead: 0 });
    cache.commit(first.writes, 0);
    expect(cache.plan('key:model', prompt, total, 1000)).toMatchObject({ input: 23, cacheCreation: 0, cacheRead: 1500 });
  });

  it('reads the longest cached prefix and writes only the rest', () => {
    const cache = new PromptCache();
    cache.commit(cache.plan('s', prompt.slice(0, 2), 1003, 0).writes, 0);
    const grown = cache.plan('s', prompt, total, 10);
    expect(grown).toMatchObject({ cacheRead: 1000, cacheCreation: 500, input: 23 });
  });

  it('keeps scopes apart and forgets entries after their TTL', () => {
    const cache = new PromptCache();
    cache.commit(cache.plan('a', prompt, total, 0).writes, 0);
    expect(cache.plan('b', prompt, total, 1).cacheRead).toBe(0);
    expect(cache.plan('a', prompt, total, 300_001).cacheRead).toBe(0);
  });
});
