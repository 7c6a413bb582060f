/**
 * How long a caller whose job ran out of attempts on a failing model should wait before it sends
 * the job again: the wait the fleet itself keeps for the model. A client told less (the gateway's
 * default `retry-after: 1`) came back into the same outage and ran out of attempts again, while
 * the fleet held the model's calls to one per probe interval.
 *
 * The longest of what is known: the provider's own `retry-after` on the last call (or a rate
 * limit's reset), the model's cooldown, and the spacing its fleet-wide throttle keeps between calls
 * while it binds (one probe per `throttle.probeIntervalMs` when open). Read once, at the job's
 * last failure, so no call pays for it; unknown (Redis failing, nothing binding): undefined.
 */
import type { PoolLimits } from '@headroom/queue';
import type { ProviderCallFailure } from '../providers/types.js';
import type { RunContext } from './run-context.js';

export async function modelWaitMs(ctx: RunContext, pool: string, model: string, limits: PoolLimits, failure: ProviderCallFailure): Promise<number | undefined> {
  const waits: number[] = [];
  const hint = failure.retryAfterMs ?? (failure.kind === 'rate_limit' ? failure.resetInMs : undefined);
  if (hint !== undefined) waits.push(hint);
  try {
    // The failed call's outcome rides on the next acquire: sent now, the throttle counts it.
    await ctx.bucket.flush();
    const snap = await ctx.bucket.snapshot(pool, limits, { models: [model] });
    const cooling = snap.cooldowns.find((c) => c.model === model);
    if (cooling) waits.push(cooling.remainingMs);
    const throttle = snap.throttles.find((t) => t.model === model);
    if (throttle && throttle.state !== 'closed' && throttle.allowedRpm > 0) waits.push(60_000 / throttle.allowedRpm);
  } catch (err) {
    ctx.logger.warn({ err: (err as Error).message, pool, model }, "could not read the model's cooldown and throttle for the failure's retry-after");
  }
  const longest = Math.max(0, ...waits);
  return longest > 0 ? Math.ceil(longest) : undefined;
}
