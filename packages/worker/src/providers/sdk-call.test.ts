import { describe, expect, it } from 'vitest';
import { PROVIDER_ERROR_MAX_BYTES } from '@headroom/queue';
import { kindOfStatus, parseRetryAfterMs, redact, sentError } from './sdk-call.js';

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
    // A proxy's own bearer token or x-api-key, which the worker never held, is cut too (redaction.ts).
    expect(redact('upstream said: authorization: Bearer proxy-token-0123456789 and x-api-key: "gw-key-0123456789"', 'unrelated')).toBe('upstream said: authorization: Bearer [redacted] and x-api-key: "[redacted]"');
  });
});

describe('sentError', () => {
  const KEY = 'opaque-provider-key-0123456789';
  const openai = { provider: 'openai' as const, apiKey: KEY };
  const anthropic = { provider: 'anthropic' as const, apiKey: KEY };

  it("rebuilds OpenAI's body around the error member its SDK keeps, and keeps Anthropic's whole body", () => {
    const inner = { message: 'You exceeded your current quota.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' };
    expect(sentError(openai, inner)).toEqual({ provider: 'openai', body: { error: inner } });
    const body = { type: 'error', error: { type: 'billing_error', message: 'Your credit balance is too low.' }, request_id: 'req_011abc' };
    expect(sentError(anthropic, body)).toEqual({ provider: 'anthropic', body });
  });

  it('cuts the key, and anything shaped like one, from every string of the body', () => {
    const body = { type: 'error', error: { type: 'authentication_error', message: `invalid key ${KEY}`, details: { echoed: [`Bearer ${KEY}`, 'sk-proj-AAAABBBBCCCCDDDD'], [KEY]: 1 } } };
    expect(sentError(anthropic, body)?.body).toEqual({
      type: 'error',
      error: { type: 'authentication_error', message: 'invalid key [redacted]', details: { echoed: ['Bearer [redacted]', '[redacted]'], '[redacted]': 1 } },
    });
  });

  it('keeps nothing that is not an error body of the provider, or is too large to keep', () => {
    // What the SDKs hold for an HTML page or an empty body.
    expect(sentError(openai, undefined)).toBeUndefined();
    expect(sentError(anthropic, undefined)).toBeUndefined();
    expect(sentError(anthropic, { detail: 'a proxy of its own' })).toBeUndefined();
    expect(sentError(openai, { message: 'x'.repeat(PROVIDER_ERROR_MAX_BYTES), type: 'invalid_request_error' })).toBeUndefined();
    // Nested past the stack: given up, never thrown (a provider call never throws).
    let deep: unknown = { message: 'deep', type: 'x' };
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(sentError(openai, { message: 'm', type: 't', deep })).toBeUndefined();
  });
});
