import { describe, expect, it } from 'vitest';
import { type HeaderSource, type Observed, parseDurationMs, parseRateLimitHeaders, parseRetryAfterMs } from './rate-limit-headers.js';

const NOW = Date.parse('2026-03-01T12:00:00Z');

describe('parseDurationMs', () => {
  it.each([
    ['1s', 1000],
    ['6m0s', 360_000],
    ['250ms', 250],
    ['1h2m3.5s', 3_723_500],
    ['0s', 0],
    ['2m59.56s', 179_560],
    ['1.5', 1500],
    ['20ms', 20],
  ])('reads %s as %d ms', (value, ms) => {
    expect(parseDurationMs(value)).toBeCloseTo(ms, 6);
  });

  it.each(['', 'soon', '1x', '-1s', 's', '1s2'])('drops the malformed value %j', (value) => {
    expect(parseDurationMs(value)).toBeUndefined();
  });
});

describe('parseRateLimitHeaders', () => {
  const cases: { name: string; headers: HeaderSource; expected: Observed }[] = [
    {
      name: 'Anthropic: every dimension, resets read against the response date, token counts carry the rounding slack',
      headers: {
        date: 'Sun, 01 Mar 2026 12:00:00 GMT',
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '49',
        'anthropic-ratelimit-requests-reset': '2026-03-01T12:00:01Z',
        'anthropic-ratelimit-input-tokens-limit': '30000',
        'anthropic-ratelimit-input-tokens-remaining': '27000',
        'anthropic-ratelimit-input-tokens-reset': '2026-03-01T12:00:06Z',
        'anthropic-ratelimit-output-tokens-limit': '8000',
        'anthropic-ratelimit-output-tokens-remaining': '7000',
        'anthropic-ratelimit-output-tokens-reset': '2026-03-01T12:00:07.500Z',
        'anthropic-ratelimit-tokens-limit': '8000',
        'anthropic-ratelimit-tokens-remaining': '7000',
        'anthropic-ratelimit-tokens-reset': '2026-03-01T12:00:07.500Z',
      },
      expected: {
        provider: 'anthropic',
        rpm: { limit: 50, remaining: 49, resetInMs: 1000, remainingSlack: 0 },
        itpm: { limit: 30_000, remaining: 27_000, resetInMs: 6000, remainingSlack: 500 },
        otpm: { limit: 8000, remaining: 7000, resetInMs: 7500, remainingSlack: 500 },
        combinedTokens: { limit: 8000, remaining: 7000, resetInMs: 7500, remainingSlack: 500 },
      },
    },
    {
      name: 'Anthropic without a date header: resets read against the injected now; a past reset is 0',
      headers: {
        'Anthropic-RateLimit-Input-Tokens-Remaining': '1000',
        'anthropic-ratelimit-input-tokens-reset': '2026-03-01T12:00:02+00:00',
        'anthropic-ratelimit-output-tokens-reset': '2026-03-01T11:59:00Z',
      },
      expected: {
        provider: 'anthropic',
        itpm: { remaining: 1000, resetInMs: 2000, remainingSlack: 500 },
        otpm: { resetInMs: 0, remainingSlack: 500 },
      },
    },
    {
      name: 'OpenAI: requests and tokens with Go-style reset durations',
      headers: {
        'x-ratelimit-limit-requests': '5000',
        'x-ratelimit-remaining-requests': '4999',
        'x-ratelimit-reset-requests': '12ms',
        'x-ratelimit-limit-tokens': '800000',
        'x-ratelimit-remaining-tokens': '795000',
        'x-ratelimit-reset-tokens': '1h2m3.5s',
      },
      expected: {
        provider: 'openai',
        rpm: { limit: 5000, remaining: 4999, resetInMs: 12, remainingSlack: 0 },
        tpm: { limit: 800_000, remaining: 795_000, resetInMs: 3_723_500, remainingSlack: 0 },
      },
    },
    {
      name: 'node-style record: array values take the first, numbers are read, malformed values are dropped',
      headers: {
        'x-ratelimit-limit-requests': ['60', '61'],
        'x-ratelimit-remaining-requests': 10,
        'x-ratelimit-reset-requests': 'whenever',
        'x-ratelimit-limit-tokens': 'lots',
        'x-ratelimit-remaining-tokens': '-5',
      },
      expected: { provider: 'openai', rpm: { limit: 60, remaining: 10, remainingSlack: 0 } },
    },
    {
      name: 'retry-after-ms wins over retry-after',
      headers: { 'retry-after-ms': '1234.5', 'retry-after': '30' },
      expected: { retryAfterMs: 1234.5 },
    },
    {
      name: 'retry-after in seconds',
      headers: { 'retry-after': '7', 'anthropic-ratelimit-requests-remaining': '0' },
      expected: { provider: 'anthropic', rpm: { remaining: 0, remainingSlack: 0 }, retryAfterMs: 7000 },
    },
    {
      name: 'retry-after as an HTTP date, against the response date',
      headers: { date: 'Sun, 01 Mar 2026 12:00:00 GMT', 'retry-after': 'Sun, 01 Mar 2026 12:00:45 GMT' },
      expected: { retryAfterMs: 45_000 },
    },
    { name: 'no rate-limit headers at all', headers: { 'content-type': 'application/json' }, expected: {} },
  ];

  it.each(cases)('$name', ({ headers, expected }) => {
    expect(parseRateLimitHeaders(headers, { nowMs: NOW })).toEqual(expected);
  });

  it('reads a fetch Headers object the same as a record', () => {
    const record = { 'x-ratelimit-remaining-tokens': '100', 'x-ratelimit-reset-tokens': '6m0s', 'retry-after': '2' };
    expect(parseRateLimitHeaders(new Headers(record), { nowMs: NOW })).toEqual(parseRateLimitHeaders(record, { nowMs: NOW }));
    expect(parseRateLimitHeaders(new Headers(record)).tpm).toEqual({ remaining: 100, resetInMs: 360_000, remainingSlack: 0 });
  });
});

describe('parseRetryAfterMs', () => {
  it.each<[Record<string, string>, number | undefined]>([
    [{ 'retry-after': '0' }, 0],
    [{ 'retry-after': '1.5' }, 1500],
    [{ 'retry-after': 'Sun, 01 Mar 2026 12:01:00 GMT' }, 60_000],
    [{ 'retry-after': 'Sun, 01 Mar 2026 11:00:00 GMT' }, 0],
    [{ 'retry-after': 'later' }, undefined],
    [{ 'retry-after-ms': 'x', 'retry-after': '3' }, 3000],
    [{}, undefined],
  ])('%j -> %s', (headers, ms) => {
    expect(parseRetryAfterMs(headers, { nowMs: NOW })).toBe(ms);
  });
});
