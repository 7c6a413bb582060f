/**
 * The one retry policy: what to do after a failed provider call. Pure (randomness is passed in),
 * so every rule is pinned by a table-driven test.
 *
 * The answer separates two things a caller must act on independently: `cooldownMs` is about the
 * MODEL (nobody in the fleet should call it for that long; a 429's retry-after), `action` is about
 * THIS JOB (wait and retry the same model, move to the next model of the ladder, or give up).
 *
 * ```ts
 * const d = decide(failure, attempt, config.retry, Math.random, { hasNextModel: ladder.length > i + 1 });
 * if (d.cooldownMs !== undefined) await bucket.cooldown(model, d.cooldownMs);
 * if (d.action === 'retry') job.moveToDelayed(Date.now() + d.delayMs);
 * else if (d.action === 'fallback') tryModel(ladder[i + 1]);
 * else fail(d.code, d.reason);
 * ```
 */
import type { FailureCode, HeadroomConfig } from '@headroom/queue';
import type { FailureKind, ProviderCallFailure } from '../providers/types.js';

export type RetryConfig = HeadroomConfig['retry'];

/** Backoff never waits longer than this, whatever the config says. */
export const MAX_BACKOFF_MS = 30_000;
/**
 * After a failure that says the model is unhealthy, the backoff ceiling doubles at most this many
 * times (100, 200, 400, 400 ms... at the default base): the model's fleet-wide retry budget and
 * throttle bound the load retries add, so a job's own backoff only has to keep retries from
 * landing together, and a CRITICAL job in a 50% brownout is served within about a second.
 */
export const UNHEALTHY_MAX_DOUBLINGS = 2;
/** A spend cap does not clear by waiting: one more try (a fallback, or a reset that just happened), then stop. */
export const SPEND_CAP_MAX_ATTEMPTS = 2;

/** The failure codes this policy decides (see `FailureCode` for what each means). */
export type RetryFailCode = Extract<FailureCode, 'PROVIDER_REJECTED' | 'SPEND_CAP' | 'RETRIES_EXHAUSTED'>;

export type RetryDecision =
  /** Call the same model again after `delayMs`. */
  | { action: 'retry'; delayMs: number; cooldownMs?: number }
  /** Call the next model of the ladder now (its own bucket and throttle still apply). */
  | { action: 'fallback'; cooldownMs?: number }
  | { action: 'fail'; code: RetryFailCode; reason: string };

export interface RetryContext {
  /** The job's ladder has a model after the one that failed. @default false */
  hasNextModel?: boolean;
}

const REJECTED: ReadonlySet<FailureKind> = new Set(['invalid_request', 'auth', 'not_found', 'unknown']);

/** The failure as a one-line reason: `400 invalid_request_error: max_tokens: ...`. */
export function describeFailure(failure: ProviderCallFailure): string {
  const status = failure.status === null ? failure.kind : String(failure.status);
  return `${status} ${failure.message}`;
}

/** Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))). Spreads a thundering herd best. */
export function backoffMs(attempt: number, retry: RetryConfig, random: () => number, baseDelayMs = retry.baseDelayMs, maxDoublings = Number.POSITIVE_INFINITY): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, retry.maxDelayMs, baseDelayMs * 2 ** Math.min(maxDoublings, Math.max(0, attempt - 1)));
  return Math.floor(random() * ceiling);
}

/** The backoff after a failure the retry budget bounds (5xx, 529, no answer, a bad body). */
const unhealthyBackoffMs = (attempt: number, retry: RetryConfig, random: () => number) =>
  backoffMs(attempt, retry, random, retry.unhealthyBaseDelayMs, UNHEALTHY_MAX_DOUBLINGS);

/**
 * Decides after the `attempt`-th call of a job (1-based, counting every call across models)
 * failed with `failure`.
 */
export function decide(
  failure: ProviderCallFailure,
  attempt: number,
  retry: RetryConfig,
  random: () => number,
  context: RetryContext = {},
): RetryDecision {
  if (REJECTED.has(failure.kind)) {
    return { action: 'fail', code: 'PROVIDER_REJECTED', reason: describeFailure(failure) };
  }
  if (failure.kind === 'spend_cap' && attempt >= SPEND_CAP_MAX_ATTEMPTS) {
    return { action: 'fail', code: 'SPEND_CAP', reason: `${describeFailure(failure)} (after ${attempt} attempts; a spend cap does not clear by waiting)` };
  }
  if (attempt >= retry.maxAttempts) {
    return { action: 'fail', code: 'RETRIES_EXHAUSTED', reason: `after ${attempt} attempts, last: ${describeFailure(failure)}` };
  }

  // A rate limit without retry-after is timed by its reset headers (`resetInMs`).
  const hint = failure.retryAfterMs ?? (failure.kind === 'rate_limit' ? failure.resetInMs : undefined);
  const hinted = hint === undefined ? undefined : Math.max(0, Math.ceil(hint));
  const delayMs = hinted ?? backoffMs(attempt, retry, random);
  switch (failure.kind) {
    case 'rate_limit': {
      // The limit is the model's (its pool's), not the job's: everyone waits out retry-after or
      // the reset. With neither, a short unjittered cooldown (the backoff ceiling) keeps the
      // fleet off the model while this job backs off.
      const cooldownMs = hinted ?? Math.min(MAX_BACKOFF_MS, retry.maxDelayMs, retry.baseDelayMs * 2 ** (attempt - 1));
      return context.hasNextModel ? { action: 'fallback', cooldownMs } : { action: 'retry', delayMs, cooldownMs };
    }
    case 'overloaded':
      // Overload is the model's, but no cooldown: a 529 usually strikes a fraction of calls, and
      // a fleet-wide stop at each one would idle a model that still serves the rest. The
      // model's fleet-wide throttle and retry budget answer it; the job itself retries soon
      // (short backoff), or falls back.
      return context.hasNextModel ? { action: 'fallback' } : { action: 'retry', delayMs: hinted ?? unhealthyBackoffMs(attempt, retry, random) };
    case 'spend_cap':
      return context.hasNextModel ? { action: 'fallback' } : { action: 'retry', delayMs: backoffMs(attempt, retry, random) };
    case 'server':
    case 'network':
    case 'bad_response':
      // The retry budget bounds what these retries add to the model's load, fleet-wide.
      return { action: 'retry', delayMs: hinted ?? unhealthyBackoffMs(attempt, retry, random) };
    default:
      return { action: 'fail', code: 'PROVIDER_REJECTED', reason: describeFailure(failure) };
  }
}
