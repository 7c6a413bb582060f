import { describe, expect, it } from 'vitest';
import { kindOfStatus, parseRetryAfterMs, redact } from './sdk-call.js';

describe('parseRetryAfterMs', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  it.each([
    [{ 'retry-after': '7' }, 7000],
    [{ 'retry-after': '0.5' }, 500],
    [{ 'retry-after': '0' }, 0],
    [{ 'retry-after-ms': '1250' }, 1250],
    [{ 'retry-after-ms': '1250', 'retry-after': '2' }, 1250],
    [{ 'retry-after-ms': 'soon', 'retry-after': '2' }, 2000],
    [{ 'retry-after': 'Thu, 01 Jan 2026 00:00:30 GMT' }, 30_000],
    [{ 'retry-after': 'Wed, 31 Dec 2025 23:59:00 GMT' }, 0],
    [{ 'retry-after': 'whenever' }, undefined],
    [{ 'retry-after': '-3' }, undefined],
    [{}, undefined],
  ])('%j -> %s', (headers, expected) => {
    expect(parseRetryAfterMs(new Headers(headers), now)).toBe(expected);
  });
});

describe('kindOfStatus', () => {
  it.each([
    // A 429 is a rate limit unless the provider's code says spend cap, retry-after or not.
    [429, undefined, 'rate_limit'],
    [429, 'rate_limit_exceeded', 'rate_limit'],
    [429, 'insufficient_quota', 'spend_cap'],
    [429, 'enforced_spend_limit_reached', 'spend_cap'],
    [429, 'contract_spend_limit_reached', 'spend_cap'],
    [529, undefined, 'overloaded'],
    [500, undefined, 'server'],
    [502, undefined, 'server'],
    [503, undefined, 'server'],
    [504, undefined, 'server'],
    [408, undefined, 'server'],
    [501, undefined, 'unknown'],
    [400, undefined, 'invalid_request'],
    [413, undefined, 'invalid_request'],
    [422, undefined, 'invalid_request'],
    [401, undefined, 'auth'],
    [403, undefined, 'auth'],
    [404, undefined, 'not_found'],
    [402, undefined, 'spend_cap'],
    [418, undefined, 'unknown'],
  ] as const)('%i (code %s) -> %s', (status, code, kind) => {
    expect(kindOfStatus(status, code)).toBe(kind);
  });
});

describe('redact', () => {
  it('removes the key itself, anywhere in the text', () => {
    expect(redact('key=abcd1234efgh and again abcd1234efgh', 'abcd1234efgh')).toBe('key=[redacted] and again [redacted]');
  });
  it('removes anything shaped like a provider key, even another one', () => {
    expect(redact('Incorrect API key provided: sk-proj-AAAABBBBCCCCDDDD.', 'unrelated')).toBe('Incorrect API key provided: [redacted].');
  });
  it('leaves masked hints and ordinary text alone', () => {
    expect(redact('Incorrect API key provided: sk-***. Try again.', 'sk-secret-key-1234567890')).toBe('Incorrect API key provided: sk-***. Try again.');
  });
});
