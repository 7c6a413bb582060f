// GET /v1/models and /v1/models/{id} through both official SDKs: each lists its provider's models
// in its shape, Anthropic's in pages, and answers an unknown id with the provider's 404.

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from './index.js';
import { failure } from './sdk-clients.fixture.js';

describe('the models endpoints', () => {
  let sim: Simulator;
  let anthropic: Anthropic;
  let openai: OpenAI;
  const limits = { rpm: 1000, itpm: 1_000_000, otpm: 1_000_000, tpm: 1_000_000 };

  beforeAll(async () => {
    sim = await startSimulator({
      latencyMs: 0,
      models: {
        'claude-sonnet-4-6': { provider: 'anthropic', limits, maxOutputTokens: 64_000, contextWindow: 200_000 },
        'claude-haiku-4-5': { provider: 'anthropic', limits },
        'claude-opus-4-6': { provider: 'anthropic', limits, maxOutputTokens: 128_000 },
        'gpt-4.1': { provider: 'openai', limits },
        'gpt-4o-mini': { provider: 'openai', limits },
      },
    });
    anthropic = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
    openai = new OpenAI({ apiKey: 'k', baseURL: `${sim.url}/v1`, maxRetries: 0 });
  });
  afterAll(() => sim.close());

  it('Anthropic: lists its models as ModelInfo, in pages the SDK follows both ways', async () => {
    const all: string[] = [];
    for await (const model of anthropic.models.list({ limit: 2 })) all.push(model.id);
    expect(all).toEqual(['claude-sonnet-4-6', 'claude-haiku-4-5', 'claude-opus-4-6']);

    const first = await anthropic.models.list({ limit: 2 });
    expect([first.data.map((m) => m.id), first.has_more, first.first_id, first.last_id]).toEqual([['claude-sonnet-4-6', 'claude-haiku-4-5'], true, 'claude-sonnet-4-6', 'claude-haiku-4-5']);
    const second = await first.getNextPage();
    expect([second.data.map((m) => m.id), second.has_more]).toEqual([['claude-opus-4-6'], false]);
    expect(second.hasNextPage()).toBe(false);
    const back = await anthropic.models.list({ limit: 1, before_id: 'claude-opus-4-6' });
    expect([back.data.map((m) => m.id), back.has_more]).toEqual([['claude-haiku-4-5'], true]);

    expect(first.data[0]).toEqual({
      type: 'model',
      id: 'claude-sonnet-4-6',
      display_name: 'Claude Sonnet 4.6',
      created_at: '1970-01-01T00:00:00Z',
      capabilities: null,
      deprecated_at: null,
      lifecycle: 'active',
      line: 'sonnet',
      max_input_tokens: 200_000,
      max_tokens: 64_000,
      retires_at: null,
    });
  });

  it('Anthropic: retrieves one model, and answers an unknown or another provider’s with 404 not_found_error', async () => {
    const opus = await anthropic.models.retrieve('claude-opus-4-6');
    expect([opus.id, opus.type, opus.display_name, opus.max_tokens]).toEqual(['claude-opus-4-6', 'model', 'Claude Opus 4.6', 128_000]);
    for (const id of ['claude-nope-1', 'gpt-4.1']) {
      const missing = await failure(anthropic.models.retrieve(id));
      expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
      expect((missing as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({ type: 'error', error: { type: 'not_found_error', message: `model: ${id}` } });
    }
  });

  it('Anthropic: refuses a page size out of 1-1000 and a cursor not in the list with 400', async () => {
    for (const query of [{ limit: 0 }, { limit: 1001 }, { after_id: 'claude-nope-1' }]) {
      expect(await failure(anthropic.models.list(query))).toBeInstanceOf(Anthropic.BadRequestError);
    }
  });

  it('OpenAI: lists its models as a whole list of Model, and retrieves one', async () => {
    const ids: string[] = [];
    for await (const model of openai.models.list()) ids.push(model.id);
    expect(ids).toEqual(['gpt-4.1', 'gpt-4o-mini']);
    const page = await openai.models.list();
    expect(page.data[0]).toEqual({ id: 'gpt-4.1', object: 'model', created: 0, owned_by: 'system' });
    expect(page.hasNextPage()).toBe(false);
    expect(await openai.models.retrieve('gpt-4o-mini')).toMatchObject({ id: 'gpt-4o-mini', object: 'model', owned_by: 'system' });
  });

  it('OpenAI: answers an unknown or another provider’s model with 404 model_not_found', async () => {
    for (const id of ['gpt-nope', 'claude-opus-4-6']) {
      const missing = await failure(openai.models.retrieve(id));
      expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
      const error = missing as InstanceType<typeof OpenAI.NotFoundError>;
      expect(error.message).toContain(`The model \`${id}\` does not exist or you do not have access to it.`);
      expect([error.type, error.code]).toEqual(['invalid_request_error', 'model_not_found']);
    }
  });
});
