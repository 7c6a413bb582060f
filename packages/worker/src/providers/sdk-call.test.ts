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
    [429, true, undefined, 'rate_limit'],
    [429, false, undefined, 'spend_cap'],
    [429, true, 'insufficient_quota', 'spend_cap'],
    [529, false, undefined, 'overloaded'],
    [500, false, undefined, 'server'],
    [502, false, undefined, 'server'],
    [503, true, undefined, 'server'],
    [504, false, undefined, 'server'],
    [408, false, undefined, 'server'],
    [501, false, undefined, 'unknown'],
    [400, false, undefined, 'invalid_request'],
    [413, false, undefined, 'invalid_request'],
    [422, false, undefined, 'invalid_request'],
    [401, false, undefined, 'auth'],
    [403, false, undefined, 'auth'],
    [404, false, undefined, 'not_found'],
    [402, false, undefined, 'spend_cap'],
    [418, false, undefined, 'unknown'],
  ] as const)('%i (retry-after: %s, code %s) -> %s', (status, hasRetryAfter, code, kind) => {
    expect(kindOfStatus(status, hasRetryAfter, code)).toBe(kind);
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
