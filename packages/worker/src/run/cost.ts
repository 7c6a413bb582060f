/**
 * What a call cost, in USD, from the model's configured pricing and the usage the provider
 * reported. Recorded on every result; a model without pricing costs 0 (unknown, not free, but
 * the result schema wants a number).
 *
 * ```ts
 * costOf(config.models[model]?.pricing, usage, { provider: 'anthropic', batch: false });
 * ```
 */
import type { ModelConfig, Provider, Usage } from '@headroom/queue';

export type ModelPricing = NonNullable<ModelConfig['pricing']>;

/** Cache reads default to 10% of the input price (Anthropic's rate). */
export const DEFAULT_CACHE_READ_FACTOR = 0.1;
/** Cache writes default to 125% of the input price (Anthropic's 5-minute TTL rate). */
export const DEFAULT_CACHE_WRITE_FACTOR = 1.25;
/** Both providers' batch APIs bill half price. */
export const BATCH_DISCOUNT = 0.5;

export interface CostOptions {
  /**
   * Needed because the providers count cached tokens differently: Anthropic's `input_tokens`
   * excludes cache reads and writes, while OpenAI's `prompt_tokens` (our `inputTokens`) already
   * includes its `cached_tokens` (our `cacheReadInputTokens`), which must not be billed twice.
   */
  provider: Provider;
  /** The call went through a provider batch. @default false */
  batch?: boolean;
}

/** USD for one call: tokens * price per million, halved for batch. */
export function costOf(pricing: ModelPricing | undefined, usage: Usage, options: CostOptions): number {
  if (pricing === undefined) return 0;
  const cacheReadPrice = pricing.cacheReadPerMTok ?? pricing.inputPerMTok * DEFAULT_CACHE_READ_FACTOR;
  const cacheWritePrice = pricing.cacheWritePerMTok ?? pricing.inputPerMTok * DEFAULT_CACHE_WRITE_FACTOR;
  const uncachedInput =
    options.provider === 'openai' ? Math.max(0, usage.inputTokens - usage.cacheReadInputTokens) : usage.inputTokens;
  const perMillion =
    uncachedInput * pricing.inputPerMTok +
    usage.outputTokens * pricing.outputPerMTok +
    usage.cacheReadInputTokens * cacheReadPrice +
    usage.cacheCreationInputTokens * cacheWritePrice;
  return (perMillion / 1_000_000) * (options.batch ? BATCH_DISCOUNT : 1);
}
