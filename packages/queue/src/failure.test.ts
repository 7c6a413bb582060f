import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { answeredFailure, FailureCode, failureOf, failureText, jobFailure, PROVIDER_ERROR_MAX_BYTES, providerErrorOf, REPLAYED_FAILURES } from './failure.js';

describe('failureOf', () => {
  const rejected = jobFailure(FailureCode.PROVIDER_REJECTED, '400 invalid_request_error: max_tokens: too large');

  it('reads the code the worker stored beside BullMQ text, without parsing the text', () => {
    expect(failureOf({ failedReason: failureText(rejected), progress: { attempts: 1, failure: rejected } })).toEqual(rejected);
  });

  it("keeps the provider's status and its id for the call it answered", () => {
    const refused = answeredFailure(FailureCode.PROVIDER_REJECTED, '403 permission_error: no access', { status: 403, requestId: 'req_011abc' });
    expect(refused).toEqual({ code: FailureCode.PROVIDER_REJECTED, message: '403 permission_error: no access', status: 403, providerRequestId: 'req_011abc' });
    expect(failureOf({ failedReason: failureText(refused), progress: { attempts: 1, failure: refused } })).toEqual(refused);
    // No answer (a network failure): neither is made up.
    expect(answeredFailure(FailureCode.RETRIES_EXHAUSTED, 'after 3 attempts', { status: null })).toEqual({ code: FailureCode.RETRIES_EXHAUSTED, message: 'after 3 attempts' });
  });

  it('keeps a shed job retry hint', () => {
    const shed = jobFailure(FailureCode.SHED, 'waited 61 s, past its max wait of 60 s', 4_000);
    expect(failureOf({ failedReason: failureText(shed), progress: { attempts: 0, failure: shed } })).toEqual(shed);
  });

  it('ignores a stored failure that is not the one BullMQ recorded (an earlier attempt, then a stall)', () => {
    const f = failureOf({ failedReason: 'job stalled more than allowable limit', progress: { attempts: 2, failure: rejected } });
    expect(f.code).toBe(FailureCode.STALLED);
    expect(f.message).toContain('BullMQ: job stalled more than allowable limit');
  });

  it('names both of BullMQ own stall failures STALLED', () => {
    expect(failureOf({ failedReason: 'job started more than allowable limit' }).code).toBe(FailureCode.STALLED);
  });

  it('keeps a foreign worker reason in its own words, under WORKER_FAILED', () => {
    const f = failureOf({ failedReason: 'boom: my own worker failed', progress: 42 });
    expect(f).toEqual({ code: FailureCode.WORKER_FAILED, message: 'boom: my own worker failed' });
    expect(failureText(f)).toBe('boom: my own worker failed');
  });

  it('refuses a stored failure with an unknown code', () => {
    const bogus = { code: 'NOT_A_CODE', message: 'x' };
    expect(failureOf({ failedReason: 'NOT_A_CODE: x', progress: { failure: bogus } })).toEqual({ code: FailureCode.WORKER_FAILED, message: 'NOT_A_CODE: x' });
  });
});

describe('the provider\'s error body', () => {
  const openaiBody = { error: { message: "Invalid 'max_output_tokens': integer below minimum value.", type: 'invalid_request_error', param: 'max_output_tokens', code: 'integer_below_min_value' } };
  const anthropicBody = { type: 'error', error: { type: 'rate_limit_error', message: 'You have reached your API usage limits.', details: { error_code: 'enforced_spend_limit_reached' } }, request_id: 'req_011abc' };
  /** As a reader gets it back: through JSON, as Redis stores the job's progress. */
  const stored = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;

  it("keeps each provider's error shape as it was sent, every field included", () => {
    expect(providerErrorOf('openai', openaiBody)).toEqual({ provider: 'openai', body: openaiBody });
    expect(providerErrorOf('anthropic', anthropicBody)).toEqual({ provider: 'anthropic', body: anthropicBody });
  });

  it('keeps no body that is not the provider\'s error shape, nor one past the size bound', () => {
    expect(providerErrorOf('openai', '<html><body>502 Bad Gateway</body></html>')).toBeUndefined();
    expect(providerErrorOf('openai', { detail: 'a proxy of its own' })).toBeUndefined();
    expect(providerErrorOf('openai', { error: 'a string, not an object' })).toBeUndefined();
    expect(providerErrorOf('openai', [openaiBody])).toBeUndefined();
    // An Anthropic body names itself an error and its error's type.
    expect(providerErrorOf('anthropic', openaiBody.error)).toBeUndefined();
    expect(providerErrorOf('anthropic', { error: { type: 'api_error', message: 'x' } })).toBeUndefined();
    const large = { error: { message: 'x'.repeat(PROVIDER_ERROR_MAX_BYTES), type: 'invalid_request_error', param: null, code: null } };
    expect(providerErrorOf('openai', large)).toBeUndefined();
    const justFits = { error: { message: '' } };
    justFits.error.message = 'x'.repeat(PROVIDER_ERROR_MAX_BYTES - JSON.stringify(justFits).length);
    expect(providerErrorOf('openai', justFits)?.body).toEqual(justFits);
  });

  it('goes with the failure the provider answered, and comes back from storage as it went in', () => {
    const capped = answeredFailure(FailureCode.SPEND_CAP, '429 rate_limit_error: You have reached your API usage limits. (after 2 attempts)', {
      status: 429,
      requestId: 'req_011abc',
      providerError: providerErrorOf('anthropic', anthropicBody),
    });
    expect(capped.providerError).toEqual({ provider: 'anthropic', body: anthropicBody });
    expect(failureOf({ failedReason: failureText(capped), progress: stored({ attempts: 2, failure: capped }) })).toEqual(capped);
  });

  it('reads back no stored body that is not a provider error (a reader passes it on verbatim)', () => {
    const rejected = jobFailure(FailureCode.PROVIDER_REJECTED, '400 invalid_request_error: bad', undefined, 400);
    for (const providerError of [{ provider: 'cohere', body: openaiBody }, { provider: 'openai', body: '<html>' }, { provider: 'anthropic', body: openaiBody }, 'text', null]) {
      expect(failureOf({ failedReason: failureText(rejected), progress: { failure: { ...rejected, providerError } } })).toEqual(rejected);
    }
  });
});

describe('REPLAYED_FAILURES', () => {
  it('is the list the add script answers an idempotent repeat with again (the script keeps its own copy)', () => {
    const lua = readFileSync(fileURLToPath(new URL('./lua/add-9.lua', import.meta.url)), 'utf8');
    const table = /local REPLAYED = \{([^}]*)\}/.exec(lua)?.[1] ?? '';
    const inScript = [...table.matchAll(/(\w+) = true/g)].map((m) => m[1]);
    expect(new Set(inScript)).toEqual(REPLAYED_FAILURES);
  });
});
