/**
 * How a provider charges a call's output against its limit, and so what the bucket must reserve.
 * Anthropic counts `max_tokens` toward output tokens/min when a request starts and corrects it
 * when the request ends; OpenAI counts `max_tokens` toward tokens/min up front the same way. A
 * reservation below `max_tokens` (a learned p95) then lets the fleet start calls the provider
 * refuses: with `dispatch.outputReservation: p95` against either provider, every call whose
 * `max_tokens` exceeds the p95 draws more at the provider than in the bucket, and a full bucket
 * turns that into a storm of 429s. So a p95 reservation is only allowed for a model whose
 * provider counts the actual output (`models.<m>.outputCounting: actual`: a compatible endpoint
 * or proxy that does), and refused at config load for every other.
 */
import type { Issue } from './errors.js';
import type { Provider } from './job.js';

export const OUTPUT_COUNTINGS = ['max_tokens', 'actual'] as const;
export type OutputCounting = (typeof OUTPUT_COUNTINGS)[number];

/** What each provider charges up front, as its documentation says. */
export const PROVIDER_OUTPUT_COUNTING: Record<Provider, OutputCounting> = { anthropic: 'max_tokens', openai: 'max_tokens' };

/** The limit a provider charges output against, for messages. */
const OUTPUT_DIMENSION: Record<Provider, string> = { anthropic: 'output tokens/min (otpm)', openai: 'tokens/min (tpm)' };

export interface OutputCountingModel {
  provider: Provider;
  outputCounting?: OutputCounting | undefined;
}

export function outputCountingOf(model: OutputCountingModel): OutputCounting {
  return model.outputCounting ?? PROVIDER_OUTPUT_COUNTING[model.provider];
}

/** Whether a call to this model reserves the learned p95 of its output rather than `max_tokens`. */
export function reservesOutputP95(outputReservation: 'max_tokens' | 'p95', model: OutputCountingModel): boolean {
  return outputReservation === 'p95' && outputCountingOf(model) === 'actual';
}

/**
 * The config's output reservation checked against every model's provider (on the raw input, as
 * the config's other cross-checks): `p95` for a model charged `max_tokens` up front must 429.
 */
export function outputReservationIssues(outputReservation: unknown, models: Record<string, unknown>): Issue[] {
  if (outputReservation !== 'p95') return [];
  const upFront: string[] = [];
  for (const [name, value] of Object.entries(models)) {
    const model = (typeof value === 'object' && value !== null ? value : {}) as Partial<OutputCountingModel>;
    if (model.provider !== 'anthropic' && model.provider !== 'openai') continue;
    if (outputCountingOf({ provider: model.provider, outputCounting: model.outputCounting }) === 'max_tokens') {
      upFront.push(`${name} (${model.provider} counts max_tokens toward ${OUTPUT_DIMENSION[model.provider]} when a request starts)`);
    }
  }
  if (upFront.length === 0) return [];
  return [
    {
      path: 'dispatch.outputReservation',
      message:
        `p95 must 429: ${upFront.join('; ')}. A reservation below max_tokens lets the fleet start calls the provider refuses. ` +
        'Keep max_tokens (unused output is refunded when the call settles), or set models.<model>.outputCounting: actual for an endpoint that counts actual output',
    },
  ];
}
