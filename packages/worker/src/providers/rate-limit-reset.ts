/**
 * How long a rate-limit 429 that came without `retry-after` says to wait, read from the reset
 * headers every answer carries (`anthropic-ratelimit-*-reset`, `x-ratelimit-reset-*`).
 * `retry-after` is optional in OpenAI's API, and a proxy may strip it: a 429 without one is still
 * a rate limit (a spend cap is what the provider's error code says it is, see `kindOfStatus`), and
 * the dimension the provider reports exhausted says when it frees up.
 *
 * The wait is the latest reset among the dimensions with nothing left: the provider's own word for
 * when that limit is clear, which may be later than the first unit frees (a reset is "full
 * again"), never earlier. Anything beyond a minute is a daily limit, not a per-minute one: the
 * wait stops at a minute, and the job's next attempt asks again.
 */
import { parseRateLimitHeaders, type HeaderSource } from '@headroom/queue';

/** Longest wait a reset header sets; per-minute limits are full again within it. */
export const MAX_RESET_WAIT_MS = 60_000;

export function rateLimitResetMs(headers: HeaderSource, options: { nowMs?: number } = {}): number | undefined {
  const observed = parseRateLimitHeaders(headers, options);
  let wait: number | undefined;
  for (const dimension of [observed.rpm, observed.itpm, observed.otpm, observed.tpm]) {
    if (dimension?.remaining !== 0 || dimension.resetInMs === undefined) continue;
    wait = Math.max(wait ?? 0, dimension.resetInMs);
  }
  return wait === undefined ? undefined : Math.min(MAX_RESET_WAIT_MS, wait);
}
