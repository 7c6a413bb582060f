/**
 * Which models may serve a job, in order. The job's own `fallback` wins when it gives one (an
 * empty list too: the caller asked for its primary alone); otherwise the primary's configured
 * `models.<m>.fallback` applies. Only the primary's list is read, not its fallbacks' own lists:
 * a ladder is what one config entry says, so it never grows by chaining and never loops.
 *
 * ```ts
 * // config: models: { sonnet: { fallback: [haiku] }, haiku: {} }
 * ladderOf(config, { request: { model: 'sonnet' } });                  // ['sonnet', 'haiku']
 * ladderOf(config, { request: { model: 'sonnet' }, fallback: [] });    // ['sonnet']
 * ```
 */
import type { HeadroomConfig, LlmJob } from '@headroom/queue';

export function ladderOf(config: Pick<HeadroomConfig, 'models'>, job: Pick<LlmJob, 'request' | 'fallback'>): string[] {
  const primary = job.request.model;
  const fallback = job.fallback ?? config.models[primary]?.fallback ?? [];
  return [primary, ...fallback.filter((m) => m !== primary)];
}
