import type { Usage } from '@headroom/queue';
import { describe, expect, it } from 'vitest';
import { costOf, type ModelPricing } from './cost.js';

const sonnet: ModelPricing = { inputPerMTok: 3, outputPerMTok: 15 };
const usage = (u: Partial<Usage>): Usage => ({ inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, ...u });

describe('costOf', () => {
  it('prices input and output per million tokens', () => {
    // 1,000,000 in * $3 + 200,000 out * $15 = $3 + $3
    expect(costOf(sonnet, usage({ inputTokens: 1_000_000, outputTokens: 200_000 }), { provider: 'anthropic', model: 'claude-sonnet-4-6' })).toBeCloseTo(6, 12);
  });

  it('defaults cache reads to 10% and cache writes to 125% of the input price', () => {
    const u = usage({ cacheReadInputTokens: 1_000_000, cacheCreationInputTokens: 1_000_000 });
    expect(costOf(sonnet, u, { provider: 'anthropic', model: 'claude-sonnet-4-6' })).toBeCloseTo(0.3 + 3.75, 12);
  });

  it('uses the configured cache prices when given', () => {
    const u = usage({ cacheReadInputTokens: 1_000_000, cacheCreationInputTokens: 1_000_000 });
    expect(costOf({ ...sonnet, cacheReadPerMTok: 0.5, cacheWritePerMTok: 6 }, u, { provider: 'anthropic', model: 'claude-sonnet-4-6' })).toBeCloseTo(6.5, 12);
  });

  it('bills batch calls at half price', () => {
    const u = usage({ inputTokens: 10_000, outputTokens: 2_000, cacheReadInputTokens: 5_000 });
    const full = costOf(sonnet, u, { provider: 'anthropic', model: 'claude-sonnet-4-6' });
    expect(full).toBeCloseTo((10_000 * 3 + 2_000 * 15 + 5_000 * 0.3) / 1e6, 12);
    expect(costOf(sonnet, u, { provider: 'anthropic', model: 'claude-sonnet-4-6', batch: true })).toBeCloseTo(full / 2, 12);
  });

  it('does not bill OpenAI cached tokens twice: they are part of prompt_tokens', () => {
    const gpt: ModelPricing = { inputPerMTok: 2, outputPerMTok: 8, cacheReadPerMTok: 0.5 };
    // 2,000 prompt tokens of which 1,500 cached: 500 * $2 + 1,500 * $0.5, + 100 out * $8
    const u = usage({ inputTokens: 2_000, cacheReadInputTokens: 1_500, outputTokens: 100 });
    expect(costOf(gpt, u, { provider: 'openai', model: 'gpt-4.1' })).toBeCloseTo((500 * 2 + 1_500 * 0.5 + 100 * 8) / 1e6, 12);
  });

  it('prices 1-hour cache writes at 200% of the input price and the rest of the writes at 125%, or as configured', () => {
    // 1,000,000 written, 400,000 of them with ttl 1h: 600,000 * $3.75 + 400,000 * $6
    const u = usage({ cacheCreationInputTokens: 1_000_000, cacheCreation1hInputTokens: 400_000 });
    const opts = { provider: 'anthropic', model: 'claude-sonnet-4-6' } as const;
    expect(costOf(sonnet, u, opts)).toBeCloseTo(0.6 * 3.75 + 0.4 * 6, 12);
    expect(costOf({ ...sonnet, cacheWritePerMTok: 4, cacheWrite1hPerMTok: 7 }, u, opts)).toBeCloseTo(0.6 * 4 + 0.4 * 7, 12);
    // No breakdown: every write is a 5-minute one, Anthropic's default TTL.
    expect(costOf(sonnet, usage({ cacheCreationInputTokens: 1_000_000 }), opts)).toBeCloseTo(3.75, 12);
  });

  it("defaults OpenAI's cached input by model family: gpt-5 10%, gpt-4.1, o3 and o4-mini 25%, others (gpt-4o, o1, o3-mini, unknown) 50%", () => {
    const price: ModelPricing = { inputPerMTok: 2, outputPerMTok: 8 };
    // 1,000,000 prompt tokens, all cached: only the cache-read price applies.
    const u = usage({ inputTokens: 1_000_000, cacheReadInputTokens: 1_000_000 });
    const cost = (model: string) => costOf(price, u, { provider: 'openai', model });
    expect(cost('gpt-5')).toBeCloseTo(0.2, 12);
    expect(cost('gpt-5-mini')).toBeCloseTo(0.2, 12);
    expect(cost('gpt-4.1')).toBeCloseTo(0.5, 12);
    expect(cost('gpt-4.1-nano-2025-04-14')).toBeCloseTo(0.5, 12);
    expect(cost('o3')).toBeCloseTo(0.5, 12);
    expect(cost('o4-mini')).toBeCloseTo(0.5, 12);
    expect(cost('gpt-4o')).toBeCloseTo(1, 12);
    expect(cost('o3-mini')).toBeCloseTo(1, 12);
    expect(cost('my-fine-tune')).toBeCloseTo(1, 12);
    // A configured price wins over the family's.
    expect(costOf({ ...price, cacheReadPerMTok: 0.1 }, u, { provider: 'openai', model: 'gpt-4o' })).toBeCloseTo(0.1, 12);
    // Anthropic's stays 10% whatever the model.
    expect(costOf(price, usage({ cacheReadInputTokens: 1_000_000 }), { provider: 'anthropic', model: 'claude-haiku-4-5' })).toBeCloseTo(0.2, 12);
  });

  it('is 0 for a model without pricing', () => {
    expect(costOf(undefined, usage({ inputTokens: 1_000, outputTokens: 1_000 }), { provider: 'openai', model: 'gpt-4.1' })).toBe(0);
  });

  it('is 0 for a call that used nothing', () => {
    expect(costOf(sonnet, usage({}), { provider: 'anthropic', model: 'claude-sonnet-4-6', batch: true })).toBe(0);
  });
});
