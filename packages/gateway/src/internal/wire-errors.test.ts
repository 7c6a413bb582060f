import { describe, expect, it } from 'vitest';
import { answeredFailure, FailureCode, FleetUnpublishedError, JobFailedError, JobStoppingError, JobValidationError, jobFailure, parseJob, providerErrorOf, QueueFullError, RedisOomError, RedisRefusedError, RedisUnavailableError, ShedError } from '@headroom/queue';
import { anthropic, openai, openaiResponses } from './dialects.js';
import { clientPath, errorBodyOf, fromError, paramOf } from './wire-errors.js';

describe('wire errors', () => {
  it('names a body field as the client wrote it, and a job option by its header', () => {
    expect(clientPath('request.messages.0.role')).toBe('messages.0.role');
    expect(clientPath('priority')).toBe('headroom-priority');
    expect(clientPath('fallback.1')).toBe('headroom-fallback (1)');
    expect(fromError(new JobValidationError([{ path: 'request.max_tokens', message: 'expected a positive integer, got 0' }]))).toMatchObject({
      kind: 'invalid_request',
      message: 'max_tokens: expected a positive integer, got 0',
      param: 'max_tokens',
      shouldRetry: false,
    });
  });

  it("names OpenAI's param as OpenAI writes it, with OpenAI's code for the kind of problem, and no param for a header", () => {
    expect(paramOf('request.messages.0.role')).toBe('messages[0].role');
    expect(paramOf('request.tools.1.function.parameters')).toBe('tools[1].function.parameters');
    expect(paramOf('request.max_tokens')).toBe('max_tokens');
    expect(paramOf('priority')).toBeUndefined();
    expect(paramOf('request')).toBeUndefined();
    const role = fromError(new JobValidationError([{ path: 'request.messages.0.role', message: 'expected role ..., got "bot"', code: 'invalid_value' }]));
    expect(JSON.parse(errorBodyOf(openai, role)).error).toMatchObject({ param: 'messages[0].role', code: 'invalid_value' });
    const missing = fromError(new JobValidationError([{ path: 'request.model', message: 'expected a string, got nothing', code: 'missing_required_parameter' }]));
    expect(JSON.parse(errorBodyOf(openai, missing)).error).toMatchObject({ param: 'model', code: 'missing_required_parameter' });
    // A rule across fields names the field it is raised on, with no code, as OpenAI's own do.
    const both = fromError(new JobValidationError([{ path: 'request.max_tokens', message: 'set only one of max_tokens and max_completion_tokens' }]));
    expect(JSON.parse(errorBodyOf(openai, both)).error).toMatchObject({ param: 'max_tokens', code: null });
    // A header is no body field: OpenAI's param is null there.
    const header = fromError(new JobValidationError([{ path: 'priority', message: 'expected critical, high, normal or low, got "urgent"', code: 'invalid_value' }]));
    expect(header.message).toBe('headroom-priority: expected critical, high, normal or low, got "urgent"');
    expect(JSON.parse(errorBodyOf(openai, header)).error).toMatchObject({ param: null, code: 'invalid_value' });
    // Anthropic's shape has neither.
    expect(JSON.parse(errorBodyOf(anthropic, role))).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'messages.0.role: expected role ..., got "bot"' }, request_id: null });
  });

  it("answers a refused chat body with OpenAI's own code: a decimal out of range, an empty array, a wrong type, none for a rule across fields but the one OpenAI names", () => {
    const refusal = (request: Record<string, unknown>) => {
      try {
        parseJob({ priority: 'NORMAL', provider: 'openai', request: { model: 'gpt-4.1', messages: [{ role: 'user', content: 'hi' }], ...request } });
      } catch (err) {
        return JSON.parse(errorBodyOf(openai, fromError(err))).error as Record<string, unknown>;
      }
      throw new Error('expected a refusal');
    };
    // OpenAI: "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead."
    expect(refusal({ temperature: 3 })).toEqual({ message: 'temperature: expected at most 2, got 3', type: 'invalid_request_error', param: 'temperature', code: 'decimal_above_max_value' });
    expect(refusal({ temperature: -0.5 })).toMatchObject({ param: 'temperature', code: 'decimal_below_min_value' });
    expect(refusal({ messages: [] })).toMatchObject({ param: 'messages', code: 'empty_array' });
    expect(refusal({ messages: [{ role: 'user', content: 7 }] })).toMatchObject({ param: 'messages[0].content', code: 'invalid_type', message: 'messages.0.content: expected a string or an array of content parts, got 7' });
    // OpenAI: "The 'stream_options' parameter is only allowed when 'stream' is enabled.", code null.
    expect(refusal({ stream_options: { include_usage: true } })).toMatchObject({ param: 'stream_options', code: null });
    // OpenAI names this one rule across fields (observed: langchain-ai/langgraph#5943).
    expect(refusal({ max_tokens: 5, max_completion_tokens: 5 })).toMatchObject({ param: 'max_tokens', code: 'invalid_parameter_combination' });
  });

  it("says with a stable code whose refusal each answer is, beside the status", () => {
    expect(fromError(new QueueFullError('high', 200)).code).toBe('QUEUE_FULL');
    expect(fromError(new JobValidationError([{ path: 'request.model', message: 'x' }])).code).toBe('JOB_INVALID');
    expect(fromError(new RedisUnavailableError('down')).code).toBe('REDIS_UNAVAILABLE');
    // A provider's 401 is the fleet's key refused, not the caller's: PROVIDER_REJECTED, status kept.
    const rejected = fromError(new JobFailedError('high.1', jobFailure(FailureCode.PROVIDER_REJECTED, '401 authentication_error: invalid x-api-key', undefined, 401)));
    expect(rejected).toMatchObject({ code: 'PROVIDER_REJECTED', status: 401, kind: 'authentication', message: 'authentication_error: invalid x-api-key' });
    expect(fromError(new Error('boom')).code).toBe('INTERNAL');
  });

  it('makes backpressure a 429 with a retry hint the SDKs honour', () => {
    expect(fromError(new QueueFullError('high', 200))).toMatchObject({ kind: 'rate_limit', retryAfterMs: 1_000 });
    expect(fromError(new ShedError('low', 'pressure 0.9', 7_000))).toMatchObject({ kind: 'rate_limit', retryAfterMs: 7_000 });
    expect(fromError(new QueueFullError('low', { maxBytes: 1_000, bytes: 900, jobBytes: 200 })).message).toContain('would pass its maxBytes of 1000');
    expect(fromError(new RedisUnavailableError('down'))).toMatchObject({ kind: 'unavailable' });
  });

  it("tells the SDK not to retry a job a caller or an operator cancelled, and to retry one withdrawn from a gateway taken for gone, or a repeat of a key whose job is stopping", () => {
    // Producer.cancel, or Bull Board: the SDK's retry would send the call again, undoing the cancel.
    const cancelled = fromError(new JobFailedError('normal.1', jobFailure(FailureCode.CANCELLED, 'cancelled by its caller after 3 events')));
    expect(cancelled).toMatchObject({ kind: 'api_error', code: 'CANCELLED', shouldRetry: false });
    // Its gateway's beats lapsed while it lived: its client is still there, and its retry runs the job again.
    const withdrawn = fromError(new JobFailedError('normal.2', jobFailure(FailureCode.CANCELLED, 'withdrawn before its call: the gateway waiting on it (gateway-1) is gone', 0)));
    expect(withdrawn).toMatchObject({ kind: 'api_error', code: 'CANCELLED', retryAfterMs: 0 });
    expect(withdrawn.shouldRetry).toBeUndefined();
    expect(fromError(new JobStoppingError('normal.idem-1'))).toMatchObject({ kind: 'conflict', code: 'JOB_STOPPING', retryAfterMs: 1_000 });
    expect(anthropic.status('conflict')).toBe(409);
  });

  it('answers a fleet with no published settings, or Redis out of memory, as unavailable: the SDKs retry', () => {
    expect(fromError(new FleetUnpublishedError('normal'))).toMatchObject({ kind: 'unavailable', retryAfterMs: 1_000, message: expect.stringContaining('no fleet settings') });
    expect(fromError(new RedisOomError())).toMatchObject({ kind: 'unavailable', retryAfterMs: 1_000, message: expect.stringContaining('out of memory') });
  });

  it("answers a Redis that refuses the gateway (a password rotated under it) as unavailable, code REDIS_REFUSED, never naming the Redis to the client", () => {
    const answer = fromError(new RedisRefusedError('redis://:***@10.0.0.5:6379', 'WRONGPASS invalid username-password pair (check the user and password in the URL)'));
    // It was a 500 "internal gateway error", as for a bug.
    expect(answer).toEqual({ kind: 'unavailable', code: 'REDIS_REFUSED', message: 'the queue is unavailable; retry later', retryAfterMs: 1_000 });
  });

  it("answers a job past its deadline as overloaded with a retry hint, and no SDK retry: the max wait bounds the client's whole wait", () => {
    const err = fromError(new JobFailedError('high.x', jobFailure(FailureCode.DEADLINE_EXCEEDED, 'not started within its maxWaitMs of 200 ms (waited 250 ms)')));
    expect(err).toMatchObject({ kind: 'overloaded', retryAfterMs: 1_000, shouldRetry: false, message: expect.stringContaining('maxWaitMs of 200 ms') });
    // A job out of attempts is still the SDK's to retry: a burst of 529s may be over by then.
    expect(fromError(new JobFailedError('high.x', jobFailure(FailureCode.RETRIES_EXHAUSTED, 'after 6 attempts, last: 529 x')))).not.toHaveProperty('shouldRetry');
  });

  it("answers a batch's failure without an automatic retry: each would be another batch, hours long", () => {
    for (const code of [FailureCode.BATCH_ERRORED, FailureCode.BATCH_EXPIRED, FailureCode.BATCH_CANCELED]) {
      expect(fromError(new JobFailedError('batch.x', jobFailure(code, 'the batch entry failed')))).toMatchObject({ kind: 'api_error', code, shouldRetry: false });
    }
    expect(fromError(new JobFailedError('high.x', jobFailure(FailureCode.STREAM_FAILED, 'cut')))).not.toHaveProperty('shouldRetry');
  });

  it('tells the client to retry when the worker foresaw a start, not a second from now (a model cooling down for 30 s)', () => {
    const failure = jobFailure(FailureCode.DEADLINE_EXCEEDED, 'cannot start within its maxWaitMs of 5000 ms: waited 2020 ms, and its cooldown wait needs 27980 ms more', 27_980);
    expect(fromError(new JobFailedError('high.x', failure))).toMatchObject({ kind: 'overloaded', retryAfterMs: 27_980 });
  });

  it("passes a provider's 4xx through with its status and message, and never retries it", () => {
    const failure = jobFailure(FailureCode.PROVIDER_REJECTED, '403 permission_error: not allowed', undefined, 403);
    expect(fromError(new JobFailedError('high.x', failure))).toEqual({ kind: 'permission', code: 'PROVIDER_REJECTED', status: 403, message: 'permission_error: not allowed', shouldRetry: false });
  });

  it("answers a provider's refusal with the provider's own error body, every field as it sent it", () => {
    const body = { error: { message: "Invalid 'max_output_tokens': integer below minimum value.", type: 'invalid_request_error', param: 'max_output_tokens', code: 'integer_below_min_value' } };
    const failure = answeredFailure(FailureCode.PROVIDER_REJECTED, `400 invalid_request_error: ${body.error.message}`, { status: 400, requestId: 'req_1', providerError: providerErrorOf('openai', body) });
    const err = fromError(new JobFailedError('high.x', failure));
    expect(err).toMatchObject({ code: 'PROVIDER_REJECTED', status: 400, requestId: 'req_1', shouldRetry: false });
    expect(JSON.parse(errorBodyOf(openai, err))).toEqual(body);
    expect(JSON.parse(errorBodyOf(openaiResponses, err))).toEqual(body);
    // Never to the other provider's SDK: that one gets its own shape, rebuilt.
    // Rebuilt, it names the provider's request id as Anthropic's own body does.
    expect(JSON.parse(errorBodyOf(anthropic, err))).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: `invalid_request_error: ${body.error.message}` }, request_id: 'req_1' });
    // No body kept (an HTML page): rebuilt, as before.
    const bare = fromError(new JobFailedError('high.x', jobFailure(FailureCode.PROVIDER_REJECTED, '403 permission_error: not allowed', undefined, 403)));
    expect(JSON.parse(errorBodyOf(openai, bare))).toEqual({ error: { message: 'permission_error: not allowed', type: 'invalid_request_error', param: null, code: 'permission_denied' } });
  });

  it("answers a spend cap with the provider's status and body: a 429, or Anthropic's billing 402, never retried", () => {
    const capped = { type: 'error', error: { type: 'rate_limit_error', message: 'You have reached your API usage limits.', details: { error_code: 'enforced_spend_limit_reached' } } };
    const cap = fromError(new JobFailedError('high.x', answeredFailure(FailureCode.SPEND_CAP, '429 rate_limit_error: ...', { status: 429, providerError: providerErrorOf('anthropic', capped) })));
    expect(cap).toMatchObject({ code: 'SPEND_CAP', kind: 'rate_limit', status: 429, shouldRetry: false });
    expect(JSON.parse(errorBodyOf(anthropic, cap))).toEqual(capped);
    const billing = { type: 'error', error: { type: 'billing_error', message: 'Your credit balance is too low.' } };
    const unpaid = fromError(new JobFailedError('high.x', answeredFailure(FailureCode.SPEND_CAP, '402 billing_error: ...', { status: 402, providerError: providerErrorOf('anthropic', billing) })));
    expect(unpaid).toMatchObject({ code: 'SPEND_CAP', status: 402, shouldRetry: false });
    expect(JSON.parse(errorBodyOf(anthropic, unpaid))).toEqual(billing);
  });

  it("keeps Headroom's own answer for a job out of retries, whatever the provider's last body was", () => {
    const last = providerErrorOf('anthropic', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
    const err = fromError(new JobFailedError('high.x', answeredFailure(FailureCode.RETRIES_EXHAUSTED, 'after 6 attempts, last: 529 overloaded_error: Overloaded', { status: 529, providerError: last })));
    expect(err.providerError).toBeUndefined();
    expect(JSON.parse(errorBodyOf(anthropic, err))).toMatchObject({ error: { type: 'overloaded_error', message: expect.stringContaining('the provider kept failing') } });
  });

  it('answers a job out of retries as overloaded: 529 for Anthropic, 503 for OpenAI', () => {
    const err = fromError(new JobFailedError('high.x', jobFailure(FailureCode.RETRIES_EXHAUSTED, 'after 6 attempts, last: 529 overloaded_error: Overloaded')));
    expect(err.kind).toBe('overloaded');
    expect(anthropic.status(err.kind)).toBe(529);
    expect(openai.status(err.kind)).toBe(503);
    expect(JSON.parse(anthropic.errorBody(err.kind, 'x'))).toEqual({ type: 'error', error: { type: 'overloaded_error', message: 'x' }, request_id: null });
    expect(JSON.parse(openai.errorBody(err.kind, 'x'))).toEqual({ error: { message: 'x', type: 'server_error', param: null, code: 'overloaded' } });
  });

  it("tells the client to retry a job out of retries after the wait the fleet keeps for its failing model, not a second from now", () => {
    const failure = { ...jobFailure(FailureCode.RETRIES_EXHAUSTED, 'after 3 attempts, last: 500 api_error: Internal server error'), retryAfterMs: 2_000 };
    expect(fromError(new JobFailedError('high.x', failure))).toMatchObject({ kind: 'overloaded', retryAfterMs: 2_000 });
    // None known (one bad call of a healthy model): the default second.
    expect(fromError(new JobFailedError('high.x', jobFailure(FailureCode.RETRIES_EXHAUSTED, 'after 3 attempts, last: 503 x')))).toMatchObject({ retryAfterMs: 1_000 });
  });

  it('frames SSE as each provider does', () => {
    expect(anthropic.frame('{"type":"ping"}')).toBe('event: ping\ndata: {"type":"ping"}\n\n');
    expect(openai.frame('{"id":"c"}')).toBe('data: {"id":"c"}\n\n');
    expect(openai.endFrame).toBe('data: [DONE]\n\n');
  });
});
