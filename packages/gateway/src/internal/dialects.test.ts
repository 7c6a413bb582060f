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
