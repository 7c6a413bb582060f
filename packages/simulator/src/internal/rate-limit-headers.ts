// Rate-limit headers in each provider's own dialect, from one quota snapshot.

import type { DimensionState, QuotaSnapshot } from './quota.js';

export type HeaderMap = Record<string, string>;

/** RFC 3339 at whole seconds, rounded up so a client waiting until it never arrives early. */
export function rfc3339(ms: number): string {
  return new Date(Math.ceil(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Go's time.Duration.String() at millisecond precision, as OpenAI prints resets: 250ms, 1.5s, 6m0s, 1h0m0s. */
export function goDuration(ms: number): string {
  const total = Math.round(ms);
  if (total <= 0) return '0s';
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const seconds = (total % 60_000) / 1000;
  const secondsText = seconds.toFixed(3).replace(/\.?0+$/, '');
  return `${hours > 0 ? `${hours}h` : ''}${hours > 0 || minutes > 0 ? `${minutes}m` : ''}${secondsText}s`;
}

/** Whole seconds, rounded up and at least 1, as both providers send `retry-after`. */
export function retryAfterSeconds(waitMs: number): number {
  return Math.max(1, Math.ceil(waitMs / 1000));
}

// Anthropic reports token `remaining` rounded to the nearest thousand: a client syncing from
// headers has to tolerate that, so the simulator must not be more precise than the real thing.
function roundedThousands(state: DimensionState): number {
  return Math.min(state.limit, Math.round(state.remaining / 1000) * 1000);
}

export function anthropicRateLimitHeaders(snapshot: QuotaSnapshot, now: number): HeaderMap {
  const headers: HeaderMap = {};
  const put = (name: string, state: DimensionState, remaining: number) => {
    headers[`anthropic-ratelimit-${name}-limit`] = String(state.limit);
    headers[`anthropic-ratelimit-${name}-remaining`] = String(remaining);
    headers[`anthropic-ratelimit-${name}-reset`] = rfc3339(now + state.resetMs);
  };
  if (snapshot.requests) put('requests', snapshot.requests, snapshot.requests.remaining);
  if (snapshot.input) put('input-tokens', snapshot.input, roundedThousands(snapshot.input));
  if (snapshot.output) put('output-tokens', snapshot.output, roundedThousands(snapshot.output));
  // `tokens-*` is whichever token limit is the most restrictive right now.
  const candidates = [snapshot.input, snapshot.output].filter((s): s is DimensionState => s !== undefined);
  const tightest = candidates.sort((a, b) => a.remaining / a.limit - b.remaining / b.limit)[0];
  if (tightest) put('tokens', tightest, roundedThousands(tightest));
  return headers;
}

export function openaiRateLimitHeaders(snapshot: QuotaSnapshot): HeaderMap {
  const headers: HeaderMap = {};
  const put = (name: string, state: DimensionState) => {
    headers[`x-ratelimit-limit-${name}`] = String(state.limit);
    headers[`x-ratelimit-remaining-${name}`] = String(state.remaining);
    headers[`x-ratelimit-reset-${name}`] = goDuration(state.resetMs);
  };
  if (snapshot.requests) put('requests', snapshot.requests);
  if (snapshot.tokens) put('tokens', snapshot.tokens);
  return headers;
}

/**
 * The snapshot with requests exhausted until `resetMs` from now: what an injected rate-limit 429
 * without `retry-after` reports, so its reset headers are the client's only, exact, wait.
 */
export function exhaustRequests(snapshot: QuotaSnapshot, resetMs: number): QuotaSnapshot {
  const requests = snapshot.requests;
  if (!requests) return snapshot;
  return { ...snapshot, requests: { ...requests, remaining: 0, resetMs } };
}
