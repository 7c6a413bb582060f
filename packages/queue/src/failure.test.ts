import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { answeredFailure, FailureCode, failureOf, failureText, jobFailure, REPLAYED_FAILURES } from './failure.js';

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

describe('REPLAYED_FAILURES', () => {
  it('is the list the add script answers an idempotent repeat with again (the script keeps its own copy)', () => {
    const lua = readFileSync(fileURLToPath(new URL('./lua/add-9.lua', import.meta.url)), 'utf8');
    const table = /local REPLAYED = \{([^}]*)\}/.exec(lua)?.[1] ?? '';
    const inScript = [...table.matchAll(/(\w+) = true/g)].map((m) => m[1]);
    expect(new Set(inScript)).toEqual(REPLAYED_FAILURES);
  });
});
