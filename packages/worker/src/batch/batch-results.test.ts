import { describe, expect, it } from 'vitest';
import { anthropicEntryOutcome, openaiEntryOutcome, parseOpenAIBatchLine } from './batch-results.js';

const message = { type: 'message', content: [{ type: 'text', text: 'hi' }], usage: { input_tokens: 12, output_tokens: 3, cache_read_input_tokens: 4, cache_creation_input_tokens: 0 } };
const completion = {
  object: 'chat.completion',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hi' } }],
  usage: { prompt_tokens: 20, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 8 } },
};

describe('anthropicEntryOutcome', () => {
  it('keeps the Message untouched and maps its usage as an interactive call does', () => {
    expect(anthropicEntryOutcome({ type: 'succeeded', message })).toEqual({
      kind: 'succeeded',
      response: message,
      usage: { inputTokens: 12, outputTokens: 3, cacheReadInputTokens: 4, cacheCreationInputTokens: 0 },
    });
  });

  it('fails request errors and canceled entries at once, with the provider reason behind a code', () => {
    const errored = (type: string, message: string) => ({ type: 'errored', error: { type: 'error', error: { type, message } } });
    expect(anthropicEntryOutcome(errored('invalid_request_error', 'max_tokens: Field required'))).toEqual({ kind: 'failed', failure: { code: 'BATCH_ERRORED', message: 'invalid_request_error: max_tokens: Field required' } });
    for (const type of ['authentication_error', 'permission_error', 'not_found_error', 'request_too_large', 'some_new_error']) {
      expect(anthropicEntryOutcome(errored(type, 'no')), type).toMatchObject({ kind: 'failed', failure: { code: 'BATCH_ERRORED' } });
    }
    expect(anthropicEntryOutcome({ type: 'canceled' })).toMatchObject({ kind: 'failed', failure: { code: 'BATCH_CANCELED' } });
  });

  it("sends the provider's own failures and expired entries back for a later batch, keeping the failure to end with", () => {
    const errored = (type: string) => ({ type: 'errored', error: { type: 'error', error: { type, message: 'try later' } } });
    for (const type of ['api_error', 'overloaded_error', 'rate_limit_error', 'timeout_error']) {
      expect(anthropicEntryOutcome(errored(type)), type).toEqual({ kind: 'requeue', failure: { code: 'BATCH_ERRORED', message: `${type}: try later` } });
    }
    expect(anthropicEntryOutcome({ type: 'expired' })).toMatchObject({ kind: 'requeue', failure: { code: 'BATCH_EXPIRED' } });
  });

  it('scrubs the message and refuses a body it cannot read', () => {
    const errored = { type: 'errored', error: { type: 'error', error: { type: 'api_error', message: 'key sk-secret leaked' } } };
    expect(anthropicEntryOutcome(errored, (m) => m.replace('sk-secret', '[redacted]'))).toEqual({ kind: 'requeue', failure: { code: 'BATCH_ERRORED', message: 'api_error: key [redacted] leaked' } });
    expect(anthropicEntryOutcome({ type: 'succeeded', message: { type: 'message' } })).toMatchObject({ kind: 'failed', failure: { code: 'BATCH_BAD_RESPONSE' } });
    expect(anthropicEntryOutcome({ type: 'weird' })).toMatchObject({ kind: 'failed' });
  });
});

describe('openaiEntryOutcome', () => {
  it('keeps the ChatCompletion untouched, cached tokens read as cache reads', () => {
    const line = parseOpenAIBatchLine(JSON.stringify({ custom_id: 'batch.1', response: { status_code: 200, body: completion }, error: null }))!;
    expect(openaiEntryOutcome(line)).toEqual({
      kind: 'succeeded',
      response: completion,
      usage: { inputTokens: 20, outputTokens: 5, cacheReadInputTokens: 8, cacheCreationInputTokens: 0 },
    });
  });

  it('fails request errors and cancellation at once, with the provider reason', () => {
    const status = (status_code: number, type: string) => ({ custom_id: 'b', response: { status_code, body: { error: { type, message: 'no' } } }, error: null });
    expect(openaiEntryOutcome(status(400, 'invalid_request_error'))).toEqual({ kind: 'failed', failure: { code: 'BATCH_ERRORED', message: 'invalid_request_error: no' } });
    expect(openaiEntryOutcome(status(401, 'invalid_api_key'))).toMatchObject({ kind: 'failed', failure: { code: 'BATCH_ERRORED' } });
    expect(openaiEntryOutcome(status(404, 'not_found'))).toMatchObject({ kind: 'failed', failure: { code: 'BATCH_ERRORED' } });
    expect(openaiEntryOutcome({ custom_id: 'd', response: null, error: { code: 'batch_cancelled', message: 'stopped' } })).toEqual({ kind: 'failed', failure: { code: 'BATCH_CANCELED', message: 'stopped' } });
    expect(openaiEntryOutcome({ custom_id: 'e', response: null, error: { code: 'invalid_url', message: 'bad url' } })).toEqual({ kind: 'failed', failure: { code: 'BATCH_ERRORED', message: 'invalid_url: bad url' } });
  });

  it("sends 5xx, 429, the provider's own error lines and expiry back for a later batch", () => {
    const error = { custom_id: 'b', response: { status_code: 500, body: { error: { type: 'server_error', message: 'Sorry about that!' } } }, error: null };
    expect(openaiEntryOutcome(error)).toEqual({ kind: 'requeue', failure: { code: 'BATCH_ERRORED', message: 'server_error: Sorry about that!' } });
    expect(openaiEntryOutcome({ custom_id: 'b', response: { status_code: 429, body: {} }, error: null })).toEqual({ kind: 'requeue', failure: { code: 'BATCH_ERRORED', message: 'HTTP 429: status 429' } });
    expect(openaiEntryOutcome({ custom_id: 'b', response: { status_code: 503, body: null }, error: null })).toMatchObject({ kind: 'requeue', failure: { code: 'BATCH_ERRORED' } });
    expect(openaiEntryOutcome({ custom_id: 'c', response: null, error: { code: 'server_error', message: 'oops' } })).toEqual({ kind: 'requeue', failure: { code: 'BATCH_ERRORED', message: 'server_error: oops' } });
    expect(openaiEntryOutcome({ custom_id: 'c', response: null, error: { code: 'batch_expired', message: 'too late' } })).toEqual({ kind: 'requeue', failure: { code: 'BATCH_EXPIRED', message: 'too late' } });
  });

  it('ignores lines that are not batch lines', () => {
    expect(parseOpenAIBatchLine('not json')).toBeUndefined();
    expect(parseOpenAIBatchLine('{"response":null}')).toBeUndefined();
  });
});
