import { describe, expect, it } from 'vitest';
import { anthropic, openai, requestIdHeader } from './dialects.js';

describe('requestIdHeader', () => {
  it("names the provider's id for the call in the header that provider's SDK reads", () => {
    expect(requestIdHeader(anthropic, 'req_011CabcDEF')).toEqual({ 'request-id': 'req_011CabcDEF' });
    expect(requestIdHeader(openai, 'req_0123abcd')).toEqual({ 'x-request-id': 'req_0123abcd' });
    expect(requestIdHeader(openai, undefined)).toEqual({});
  });

  it('leaves out an id a header cannot carry, so the answer itself still goes out', () => {
    for (const garbage of ['', 'req with spaces', 'req\u0001ctl', 'réq', 'x'.repeat(257)]) {
      expect(requestIdHeader(anthropic, garbage), JSON.stringify(garbage)).toEqual({});
    }
  });
});

describe('a body that did not arrive in time', () => {
  it("is Anthropic's own 400 request_body_timeout (its SDK's BetaRequestBodyTimeoutError), and OpenAI's 408", () => {
    expect(anthropic.status('body_timeout')).toBe(400);
    expect(JSON.parse(anthropic.errorBody('body_timeout', 'the request body did not arrive within 500 ms', { requestId: 'req_headroom_1' }))).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'the request body did not arrive within 500 ms', details: { error_code: 'request_body_timeout' } },
      request_id: 'req_headroom_1',
    });
    // No other answer carries details: an SDK would raise the class of the error_code it names.
    expect(JSON.parse(anthropic.errorBody('invalid_request', 'x')).error).toEqual({ type: 'invalid_request_error', message: 'x' });
    expect(openai.status('body_timeout')).toBe(408);
    expect(JSON.parse(openai.errorBody('body_timeout', 'x'))).toEqual({ error: { message: 'x', type: 'invalid_request_error', param: null, code: 'timeout' } });
  });
});
