import { describe, expect, it } from 'vitest';
import { anthropicRateLimitHeaders, goDuration, openaiRateLimitHeaders, retryAfterSeconds, rfc3339 } from './rate-limit-headers.js';

describe('goDuration', () => {
  it('prints durations the way Go (and so OpenAI) does', () => {
    expect(goDuration(0)).toBe('0s');
    expect(goDuration(250)).toBe('250ms');
    expect(goDuration(1000)).toBe('1s');
    expect(goDuration(1500)).toBe('1.5s');
    expect(goDuration(8640)).toBe('8.64s');
    expect(goDuration(360_000)).toBe('6m0s');
    expect(goDuration(90_500)).toBe('1m30.5s');
    expect(goDuration(3_600_000)).toBe('1h0m0s');
  });
});

describe('retry-after and resets', () => {
  it('rounds retry-after up to whole seconds, at least 1', () => {
    expect(retryAfterSeconds(1)).toBe(1);
    expect(retryAfterSeconds(1000)).toBe(1);
    expect(retryAfterSeconds(1001)).toBe(2);
  });

  it('prints RFC 3339 at whole seconds, never earlier than the real reset', () => {
    expect(rfc3339(Date.UTC(2025, 0, 2, 3, 4, 5, 1))).toBe('2025-01-02T03:04:06Z');
    expect(rfc3339(Date.UTC(2025, 0, 2, 3, 4, 5, 0))).toBe('2025-01-02T03:04:05Z');
  });
});

describe('provider header sets', () => {
  const snapshot = {
    requests: { limit: 50, remaining: 49, resetMs: 1200 },
    input: { limit: 30_000, remaining: 27_499, resetMs: 5000 },
    output: { limit: 8000, remaining: 1_600, resetMs: 48_000 },
  };

  it('rounds Anthropic token remaining to the nearest thousand and names the tightest token limit', () => {
    const headers = anthropicRateLimitHeaders(snapshot, Date.UTC(2025, 0, 1));
    expect(headers['anthropic-ratelimit-requests-remaining']).toBe('49');
    expect(headers['anthropic-ratelimit-input-tokens-remaining']).toBe('27000');
    expect(headers['anthropic-ratelimit-output-tokens-remaining']).toBe('2000');
    expect(headers['anthropic-ratelimit-output-tokens-reset']).toBe('2025-01-01T00:00:48Z');
    expect(headers['anthropic-ratelimit-tokens-limit']).toBe('8000');
  });

  it('gives OpenAI exact remaining values and duration resets', () => {
    const headers = openaiRateLimitHeaders({
      requests: { limit: 500, remaining: 499, resetMs: 120 },
      tokens: { limit: 30_000, remaining: 29_000, resetMs: 2000 },
    });
    expect(headers).toEqual({
      'x-ratelimit-limit-requests': '500',
      'x-ratelimit-remaining-requests': '499',
      'x-ratelimit-reset-requests': '120ms',
      'x-ratelimit-limit-tokens': '30000',
      'x-ratelimit-remaining-tokens': '29000',
      'x-ratelimit-reset-tokens': '2s',
    });
  });
});
