import type { Usage } from '@headroom/queue';
import { describe, expect, it } from 'vitest';
import { costOf, type ModelPricing } from './cost.js';

const sonnet: ModelPricing = { inputPerMTok: 3, outputPerMTok: 15 };
const usage = (u: Partial<Usage>): Usage => ({ inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, ...u });

describe('costOf', () => {
  it('prices input and output per million tokens', () => {
    // 1,000,000 in * $3 + 200,000 out * $15 = $3 + $3
    expect(costOf(sonnet, usage({ inputTokens: 1_000_000, outputTokens: 200_000 }), { provider: 'anthropic' })).toBeCloseTo(6, 12);
  });

  it('defaults cache reads to 10% and cache writes to 125% of the input price', () => {
    const u = usage({ cacheReadInputTokens: 1_000_000, cacheCreationInputTokens: 1_000_000 });
    expect(costOf(sonnet, u, { provider: 'anthropic' })).toBeCloseTo(0.3 + 3.75, 12);
  });

  it('uses the configured cache prices when given', () => {
    const u = usage({ cacheReadInputTokens: 1_000_000, cacheCreationInputTokens: 1_000_000 });
    expect(costOf({ ...sonnet, cacheReadPerMTok: 0.5, cacheWritePerMTok: 6 }, u, { provider: 'anthropic' })).toBeCloseTo(6.5, 12);
  });

  it('bills batch calls at half price', () => {
    const u = usage({ inputTokens: 10_000, outputTokens: 2_000, cacheReadInputTokens: 5_000 });
    const full = costOf(sonnet, u, { provider: 'anthropic' });
    expect(full).toBeCloseTo((10_000 * 3 + 2_000 * 15 + 5_000 * 0.3) / 1e6, 12);
    expect(costOf(sonnet, u, { provider: 'anthropic', batch: true })).toBeCloseTo(full / 2, 12);
  });

  it('does not bill OpenAI cached tokens twice: they are part of prompt_tokens', () => {
    const gpt: ModelPricing = { inputPerMTok: 2, outputPerMTok: 8, cacheReadPerMTok: 0.5 };
    // 2,000 prompt tokens of which 1,500 cached: 500 * $2 + 1,500 * $0.5, + 100 out * $8
    const u = usage({ inputTokens: 2_000, cacheReadInputTokens: 1_500, outputTokens: 100 });
    expect(costOf(gpt, u, { provider: 'openai' })).toBeCloseTo((500 * 2 + 1_500 * 0.5 + 100 * 8) / 1e6, 12);
  });

  it('is 0 for a model without pricing', () => {
    expect(costOf(undefined, usage({ inputTokens: 1_000, outputTokens: 1_000 }), { provider: 'openai' })).toBe(0);
  });

  it('is 0 for a call that used nothing', () => {
    expect(costOf(sonnet, usage({}), { provider: 'anthropic', batch: true })).toBe(0);
  });
});
