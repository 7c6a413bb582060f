import { describe, expect, it } from 'vitest';
import { AutomaticPromptCache } from './openai-prompt-cache.js';
import type { Segment } from './prompt-tokens.js';

const seg = (material: string, tokens: number): Segment => ({ material, tokens, breakpointTtlMs: null });

describe('AutomaticPromptCache (OpenAI)', () => {
  const system = seg('system: the manual', 1990);
  const total = (segments: Segment[]) => segments.reduce((sum, s) => sum + s.tokens, 3);

  it('reports nothing the first time, then the shared prefix in steps of 128 tokens from 1024', () => {
    const cache = new AutomaticPromptCache();
    const first = [system, seg('user: first question', 13)];
    const plan = cache.plan('key:model', first, total(first), 0);
    expect(plan.cached).toBe(0);
    cache.commit(plan.writes, 0);

    const second = [system, seg('user: second question', 13)];
    expect(cache.plan('key:model', second, total(second), 1000).cached).toBe(1920); // 1990 matched
    // The whole earlier prompt, resent with one more turn, matches to its end: 2003 -> 1920.
    const longer = [...first, seg('assistant: answer', 60), seg('user: follow-up', 10)];
    expect(cache.plan('key:model', longer, total(longer), 1000).cached).toBe(1920);
  });

  it('caches nothing of a prompt under 1024 tokens, and keeps scopes and lifetimes apart', () => {
    const cache = new AutomaticPromptCache();
    const short = [seg('system: short', 900), seg('user: q', 10)];
    expect(cache.plan('s', short, total(short), 0).writes).toEqual([]);

    const long = [system, seg('user: q', 10)];
    cache.commit(cache.plan('a', long, total(long), 0).writes, 0);
    expect(cache.plan('b', long, total(long), 1).cached).toBe(0);
    expect(cache.plan('a', long, total(long), 299_999).cached).toBe(1920);
    expect(cache.plan('a', long, total(long), 300_000).cached).toBe(0);
  });
});
