/**
 * What a call cost, in USD, from the model's configured pricing and the usage the provider
 * reported. Recorded on every result; a model without pricing costs 0 (unknown, not free, but
 * the result schema wants a number).
 *
 * ```ts
 * costOf(config.models[model]?.pricing, usage, { provider: 'anthropic', model, batch: false });
 * ```
 */
import type { ModelConfig, Provider, Usage } from '@headroom/queue';

export type ModelPricing = NonNullable<ModelConfig['pricing']>;

/** Anthropic's cache reads: 10% of the input price. */
export const ANTHROPIC_CACHE_READ_FACTOR = 0.1;
/**
 * OpenAI's cached input, by model family (its pricing page): the discount differs by generation.
 * First match wins. A model in none of them is charged OpenAI's largest cached price, 50% of input
 * (the gpt-4o and o1 generations'): a cost reported too high rather than too low.
 */
export const OPENAI_CACHE_READ_FACTORS: readonly (readonly [RegExp, number])[] = [
  [/^gpt-5/, 0.1],
  [/^gpt-4\.1/, 0.25],
  [/^(o3(-\d{4}-\d{2}-\d{2})?|o4-mini.*)$/, 0.25],
];
export const OPENAI_DEFAULT_CACHE_READ_FACTOR = 0.5;
/** Cache writes with Anthropic's 5-minute TTL (its default): 125% of the input price. */
export const DEFAULT_CACHE_WRITE_FACTOR = 1.25;
/** Cache writes with Anthropic's 1-hour TTL: 200% of the input price. */
export const DEFAULT_CACHE_WRITE_1H_FACTOR = 2;
/** Both providers' batch APIs bill half price. */
export const BATCH_DISCOUNT = 0.5;

export interface CostOptions {
  /**
   * Needed because the providers count cached tokens differently: Anthropic's `input_tokens`
   * excludes cache reads and writes, while OpenAI's `prompt_tokens` (our `inputTokens`) already
   * includes its `cached_tokens` (our `cacheReadInputTokens`), which must not be billed twice.
   */
  provider: Provider;
  /** The model that answered: OpenAI's cached-input discount depends on its family. */
  model: string;
  /** The call went through a provider batch. @default false */
  batch?: boolean;
}

/** The share of the input price a cache read costs when the config gives no `cacheReadPerMTok`. */
export function defaultCacheReadFactor(provider: Provider, model: string): number {
  if (provider === 'anthropic') return ANTHROPIC_CACHE_READ_FACTOR;
  return OPENAI_CACHE_READ_FACTORS.find(([family]) => family.test(model))?.[1] ?? OPENAI_DEFAULT_CACHE_READ_FACTOR;
}

/** USD for one call: tokens * price per million, halved for batch. */
export function costOf(pricing: ModelPricing | undefined, usage: Usage, options: CostOptions): number {
  if (pricing === undefined) return 0;
  const cacheReadPrice = pricing.cacheReadPerMTok ?? pricing.inputPerMTok * defaultCacheReadFactor(options.provider, options.model);
  const cacheWritePrice = pricing.cacheWritePerMTok ?? pricing.inputPerMTok * DEFAULT_CACHE_WRITE_FACTOR;
  const cacheWrite1hPrice = pricing.cacheWrite1hPerMTok ?? pricing.inputPerMTok * DEFAULT_CACHE_WRITE_1H_FACTOR;
  // Without a breakdown every write is taken for a 5-minute one, the TTL a breakpoint gets by default.
  const written1h = Math.min(usage.cacheCreation1hInputTokens ?? 0, usage.cacheCreationInputTokens);
  const uncachedInput =
    options.provider === 'openai' ? Math.max(0, usage.inputTokens - usage.cacheReadInputTokens) : usage.inputTokens;
  const perMillion =
    uncachedInput * pricing.inputPerMTok +
    usage.outputTokens * pricing.outputPerMTok +
    usage.cacheReadInputTokens * cacheReadPrice +
    (usage.cacheCreationInputTokens - written1h) * cacheWritePrice +
    written1h * cacheWrite1hPrice;
  return (perMillion / 1_000_000) * (options.batch ? BATCH_DISCOUNT : 1);
}
