import { describe, expect, it } from 'vitest';
import type { FailureKind, ProviderCallFailure } from '../providers/types.js';
import { backoffMs, decide, type RetryConfig, type RetryDecision } from './retry-policy.js';

const retry: RetryConfig = { maxAttempts: 6, baseDelayMs: 500, maxDelayMs: 30_000, unhealthyBaseDelayMs: 100, outageGraceMs: 300_000, budget: { ratio: 0.2, windowMs: 10_000, minPerSecond: 1 } };
const STATUS: Record<FailureKind, number | null> = {
  rate_limit: 429,
  spend_cap: 429,
  overloaded: 529,
  server: 503,
  network: null,
  bad_response: 200,
  invalid_request: 400,
  auth: 401,
  not_found: 404,
  unknown: 418,
};
const failure = (kind: FailureKind, extra: Partial<ProviderCallFailure> = {}): ProviderCallFailure => ({
  ok: false,
  kind,
  status: STATUS[kind],
  message: `${kind}_error: something`,
  ...extra,
});
const half = () => 0.5;

describe('decide', () => {
  const cases: [string, ProviderCallFailure, number, { hasNextModel?: boolean }, RetryDecision][] = [
    // Retry-after is honoured exactly, and becomes the model's cooldown.
    ['429 with retry-after, no fallback', failure('rate_limit', { retryAfterMs: 7000 }), 1, {}, { action: 'retry', delayMs: 7000, cooldownMs: 7000 }],
    ['429 with retry-after, fallback exists', failure('rate_limit', { retryAfterMs: 7000 }), 1, { hasNextModel: true }, { action: 'fallback', cooldownMs: 7000 }],
    ['429 with a fractional retry-after-ms', failure('rate_limit', { retryAfterMs: 1234.2 }), 2, {}, { action: 'retry', delayMs: 1235, cooldownMs: 1235 }],
    ['429 with retry-after above the backoff cap', failure('rate_limit', { retryAfterMs: 45_000 }), 1, {}, { action: 'retry', delayMs: 45_000, cooldownMs: 45_000 }],
    // A 429 without retry-after is still a rate limit: its reset headers time it, else a backoff.
    ['429 without retry-after, reset headers', failure('rate_limit', { resetInMs: 3000 }), 1, {}, { action: 'retry', delayMs: 3000, cooldownMs: 3000 }],
    ['429 with both, retry-after wins', failure('rate_limit', { retryAfterMs: 2000, resetInMs: 9000 }), 1, {}, { action: 'retry', delayMs: 2000, cooldownMs: 2000 }],
    ['429 without any hint, attempt 2', failure('rate_limit'), 2, {}, { action: 'retry', delayMs: 500, cooldownMs: 1000 }],
    ['429 without any hint, fallback exists', failure('rate_limit'), 1, { hasNextModel: true }, { action: 'fallback', cooldownMs: 500 }],
    ['429 without any hint, attempt 5: never a spend cap', failure('rate_limit'), 5, {}, { action: 'retry', delayMs: 4000, cooldownMs: 8000 }],
    // 529: no fleet-wide cooldown (a brownout strikes a fraction of calls; the model's throttle
    // and retry budget answer it); prefer the next model, else retry soon.
    ['529, fallback exists', failure('overloaded'), 1, { hasNextModel: true }, { action: 'fallback' }],
    ['529, no fallback, attempt 3', failure('overloaded'), 3, {}, { action: 'retry', delayMs: 200 }],
    ['529 with retry-after: the job waits it, the fleet does not', failure('overloaded', { retryAfterMs: 3000 }), 1, {}, { action: 'retry', delayMs: 3000 }],
    // Full jitter: random() * min(maxDelay, base * 2^(attempt-1)), from unhealthyBaseDelayMs for
    // failures the retry budget bounds.
    ['503, attempt 1', failure('server'), 1, {}, { action: 'retry', delayMs: 50 }],
    ['503, attempt 4', failure('server'), 4, { hasNextModel: true }, { action: 'retry', delayMs: 200 }],
    ['529, attempt 5: the ceiling stops doubling at 4x the base', failure('overloaded'), 5, {}, { action: 'retry', delayMs: 200 }],
    ['503 with retry-after', failure('server', { retryAfterMs: 2000 }), 1, {}, { action: 'retry', delayMs: 2000 }],
    ['network, attempt 2', failure('network'), 2, {}, { action: 'retry', delayMs: 100 }],
    ['bad_response, attempt 1', failure('bad_response'), 1, {}, { action: 'retry', delayMs: 50 }],
    // Spend cap: bounded, whatever maxAttempts says.
    ['spend cap, first attempt', failure('spend_cap'), 1, {}, { action: 'retry', delayMs: 250 }],
    ['spend cap, first attempt, fallback exists', failure('spend_cap'), 1, { hasNextModel: true }, { action: 'fallback' }],
    [
      'spend cap, second attempt',
      failure('spend_cap'),
      2,
      { hasNextModel: true },
      { action: 'fail', code: 'SPEND_CAP', reason: '429 spend_cap_error: something (after 2 attempts; a spend cap does not clear by waiting)' },
    ],
    // The request itself is wrong: fail at once with the provider's words.
    ['400', failure('invalid_request'), 1, { hasNextModel: true }, { action: 'fail', code: 'PROVIDER_REJECTED', reason: '400 invalid_request_error: something' }],
    ['401', failure('auth'), 1, {}, { action: 'fail', code: 'PROVIDER_REJECTED', reason: '401 auth_error: something' }],
    ['404', failure('not_found'), 1, {}, { action: 'fail', code: 'PROVIDER_REJECTED', reason: '404 not_found_error: something' }],
    ['unknown', failure('unknown'), 1, {}, { action: 'fail', code: 'PROVIDER_REJECTED', reason: '418 unknown_error: something' }],
    ['rejected without a status', failure('invalid_request', { status: null }), 1, {}, { action: 'fail', code: 'PROVIDER_REJECTED', reason: 'invalid_request invalid_request_error: something' }],
    // Out of attempts: the last failure is in the reason.
    ['503 at maxAttempts', failure('server'), 6, {}, { action: 'fail', code: 'RETRIES_EXHAUSTED', reason: 'after 6 attempts, last: 503 server_error: something' }],
    ['429 past maxAttempts', failure('rate_limit', { retryAfterMs: 1000 }), 7, { hasNextModel: true }, { action: 'fail', code: 'RETRIES_EXHAUSTED', reason: 'after 7 attempts, last: 429 rate_limit_error: something' }],
    ['network at maxAttempts', failure('network'), 6, {}, { action: 'fail', code: 'RETRIES_EXHAUSTED', reason: 'after 6 attempts, last: network network_error: something' }],
  ];

  it.each(cases)('%s', (_name, f, attempt, context, expected) => {
    expect(decide(f, attempt, retry, half, context)).toEqual(expected);
  });

  it('defaults to no next model', () => {
    expect(decide(failure('rate_limit', { retryAfterMs: 100 }), 1, retry, half)).toEqual({ action: 'retry', delayMs: 100, cooldownMs: 100 });
  });

  it('never waits on a retry-after that lies in the past', () => {
    expect(decide(failure('rate_limit', { retryAfterMs: -5 }), 1, retry, half)).toEqual({ action: 'retry', delayMs: 0, cooldownMs: 0 });
  });
});

describe('backoffMs', () => {
  it.each([
    [1, 0.999, 499],
    [2, 0.999, 999],
    [6, 0.5, 8000],
    [7, 1 - 1e-9, 29_999],
    [20, 0.5, 15_000],
    [3, 0, 0],
  ])('attempt %i, random %f -> %i ms', (attempt, r, expected) => {
    expect(backoffMs(attempt, retry, () => r)).toBe(expected);
  });

  it('is capped at 30 s even when maxDelayMs is higher', () => {
    expect(backoffMs(30, { ...retry, maxDelayMs: 600_000 }, () => 1 - 1e-9)).toBe(29_999);
  });

  it('is capped at maxDelayMs when that is lower', () => {
    expect(backoffMs(10, { ...retry, maxDelayMs: 4000 }, () => 0.5)).toBe(2000);
  });

  it('spreads delays uniformly (full jitter), not around the ceiling', () => {
    let seed = 42;
    const rng = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const delays = Array.from({ length: 2000 }, () => backoffMs(4, retry, rng));
    expect(Math.min(...delays)).toBeLessThan(200);
    expect(Math.max(...delays)).toBeGreaterThan(3800);
    expect(Math.max(...delays)).toBeLessThan(4000);
  });
});
