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

  it('fails errored, canceled and expired entries with the provider reason behind a code', () => {
    const errored = { type: 'errored', error: { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } } };
    expect(anthropicEntryOutcome(errored)).toEqual({ kind: 'failed', failure: { code: 'BATCH_ERRORED', message: 'invalid_request_error: max_tokens: Field required' } });
    expect(anthropicEntryOutcome({ type: 'canceled' })).toMatchObject({ kind: 'failed', failure: { code: 'BATCH_CANCELED' } });
    expect(anthropicEntryOutcome({ type: 'expired' })).toMatchObject({ kind: 'failed', failure: { code: 'BATCH_EXPIRED' } });
  });

  it('scrubs the message and refuses a body it cannot read', () => {
    const errored = { type: 'errored', error: { type: 'error', error: { type: 'api_error', message: 'key sk-secret leaked' } } };
    expect(anthropicEntryOutcome(errored, (m) => m.replace('sk-secret', '[redacted]'))).toEqual({ kind: 'failed', failure: { code: 'BATCH_ERRORED', message: 'api_error: key [redacted] leaked' } });
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

  it('fails error lines with the provider reason: request errors, expiry, cancellation', () => {
    const error = { custom_id: 'b', response: { status_code: 500, body: { error: { type: 'server_error', message: 'Sorry about that!' } } }, error: null };
    expect(openaiEntryOutcome(error)).toEqual({ kind: 'failed', failure: { code: 'BATCH_ERRORED', message: 'server_error: Sorry about that!' } });
    expect(openaiEntryOutcome({ custom_id: 'c', response: null, error: { code: 'batch_expired', message: 'too late' } })).toEqual({ kind: 'failed', failure: { code: 'BATCH_EXPIRED', message: 'too late' } });
    expect(openaiEntryOutcome({ custom_id: 'd', response: null, error: { code: 'batch_cancelled', message: 'stopped' } })).toEqual({ kind: 'failed', failure: { code: 'BATCH_CANCELED', message: 'stopped' } });
  });

  it('ignores lines that are not batch lines', () => {
    expect(parseOpenAIBatchLine('not json')).toBeUndefined();
    expect(parseOpenAIBatchLine('{"response":null}')).toBeUndefined();
  });
});
