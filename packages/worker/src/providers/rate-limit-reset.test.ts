import { describe, expect, it } from 'vitest';
import { MAX_RESET_WAIT_MS, rateLimitResetMs } from './rate-limit-reset.js';

const now = Date.parse('2026-03-01T12:00:00Z');
const at = (ms: number) => new Date(now + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

describe('rateLimitResetMs', () => {
  it("waits for Anthropic's reset of the exhausted dimension", () => {
    const headers = new Headers({
      'anthropic-ratelimit-requests-limit': '50',
      'anthropic-ratelimit-requests-remaining': '0',
      'anthropic-ratelimit-requests-reset': at(3_000),
      'anthropic-ratelimit-input-tokens-limit': '30000',
      'anthropic-ratelimit-input-tokens-remaining': '12000',
      'anthropic-ratelimit-input-tokens-reset': at(20_000),
    });
    expect(rateLimitResetMs(headers, { nowMs: now })).toBe(3_000);
  });

  it("takes the latest reset when several dimensions are exhausted (OpenAI's durations)", () => {
    const headers = new Headers({
      'x-ratelimit-limit-requests': '500',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '250ms',
      'x-ratelimit-limit-tokens': '30000',
      'x-ratelimit-remaining-tokens': '0',
      'x-ratelimit-reset-tokens': '1.5s',
    });
    expect(rateLimitResetMs(headers)).toBe(1_500);
  });

  it('says nothing when no dimension reads exhausted (the caller backs off instead)', () => {
    const headers = new Headers({ 'x-ratelimit-limit-requests': '500', 'x-ratelimit-remaining-requests': '3', 'x-ratelimit-reset-requests': '1s' });
    expect(rateLimitResetMs(headers)).toBeUndefined();
    expect(rateLimitResetMs(new Headers())).toBeUndefined();
  });

  it('stops at a minute: a longer reset is a daily limit, asked again by the next attempt', () => {
    const headers = new Headers({ 'x-ratelimit-limit-requests': '10000', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '6h0m0s' });
    expect(rateLimitResetMs(headers)).toBe(MAX_RESET_WAIT_MS);
  });
});
