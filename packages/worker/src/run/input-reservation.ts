/**
 * What a call reserves against input tokens/min: the prompt's estimate times the learned margin
 * (token-estimator.ts), less what the provider will read from its prompt cache and not count
 * (prompt-cache-memory.ts; Anthropic only, OpenAI counts cached tokens toward TPM).
 */
import type { Provider } from '@headroom/queue';
import type { ProviderRequest } from '../providers/types.js';
import { cacheBreakpoints } from './prompt-cache-memory.js';
import type { RunContext } from './run-context.js';

export interface InputReservation {
  /** The raw estimate of the whole prompt: what `estimator.observe` is given back. */
  estimate: number;
  /** What to reserve now. */
  reserve: number;
  /**
   * What to reserve if every breakpoint prefix were cached, when that is less than `reserve`: a
   * prompt that never fits in full can only be served from the provider's cache, which another
   * worker (or an earlier limit) may have filled without this one knowing.
   */
  ifCached?: number;
}

export function inputReservation(ctx: Pick<RunContext, 'estimator' | 'promptCache'>, model: string, request: ProviderRequest, provider: Provider): InputReservation {
  const { estimate, reserve, ratio } = ctx.estimator.reserveFor(model, request, provider);
  if (provider !== 'anthropic') return { estimate, reserve };
  const breakpoints = cacheBreakpoints(request);
  if (breakpoints.length === 0) return { estimate, reserve };
  const uncached = (cached: number) => Math.max(1, Math.ceil(Math.max(0, estimate - cached) * ratio));
  const cached = ctx.promptCache.cachedEstimate(model, request, breakpoints);
  const now = cached > 0 ? uncached(cached) : reserve;
  return {
    estimate,
    reserve: now,
    get ifCached() {
      const most = uncached(ctx.promptCache.cacheableEstimate(breakpoints));
      return most < now ? most : undefined;
    },
  };
}
