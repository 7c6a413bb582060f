// Every error names its request as the provider does: Anthropic's `request-id` header and the same
// id as the body's top-level `request_id` (@anthropic-ai/sdk types ErrorResponse with it); OpenAI's
// `x-request-id` header. Both SDKs read the header into the error's `requestID`.

import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from './index.js';
import { failure } from './sdk-clients.fixture.js';

const CLAUDE = 'claude-haiku-4-5';
const GPT = 'gpt-4o-mini';

describe('request ids on errors', () => {
  let sim: Simulator;
  let anthropic: Anthropic;
  let openai: OpenAI;

  beforeAll(async () => {
    sim = await startSimulator({
      latencyMs: 0,
      outputTokens: 10,
      apiKeys: ['k'],
      models: {
        [CLAUDE]: { provider: 'anthropic', limits: { rpm: 1, itpm: 1_000_000, otpm: 1_000_000 } },
        [GPT]: { provider: 'openai', limits: { rpm: 1, tpm: 1_000_000 } },
      },
    });
    anthropic = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
    openai = new OpenAI({ apiKey: 'k', baseURL: `${sim.url}/v1`, maxRetries: 0 });
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  const claudeAsk = { model: CLAUDE, max_tokens: 20, messages: [{ role: 'user' as const, content: 'hi' }] };
  const gptAsk = { model: GPT, messages: [{ role: 'user' as const, content: 'hi' }] };

  /** The Anthropic SDK's error for `call`, checked to carry one id in its header and its body. */
  async function anthropicFailure(call: Promise<unknown>, status: number): Promise<void> {
    const error = await failure(call);
    expect(error).toBeInstanceOf(Anthropic.APIError);
    const { status: got, requestID, error: body } = error as InstanceType<typeof Anthropic.APIError>;
    expect(got).toBe(status);
    expect(requestID).toMatch(/^req_011[A-Za-z0-9]{21}$/);
    expect(body).toMatchObject({ type: 'error', error: { type: expect.any(String) }, request_id: requestID });
  }

  async function openaiFailure(call: Promise<unknown>, status: number): Promise<void> {
    const error = await failure(call);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    const { status: got, requestID } = error as InstanceType<typeof OpenAI.APIError>;
    expect(got).toBe(status);
    expect(requestID).toMatch(/^req_[A-Za-z0-9]{32}$/);
  }

  it('Anthropic: 400, 401, 404, 429 and the injected faults carry request-id and the body’s request_id', async () => {
    await anthropicFailure(anthropic.messages.create({ ...claudeAsk, max_tokens: 0 }), 400);
    await anthropicFailure(new Anthropic({ apiKey: 'wrong', baseURL: sim.url, maxRetries: 0 }).messages.create(claudeAsk), 401);
    await anthropicFailure(anthropic.messages.create({ ...claudeAsk, model: 'claude-nope-1' }), 404);
    await anthropicFailure(anthropic.models.retrieve('claude-nope-1'), 404);
    await anthropicFailure(anthropic.get('/v1/messages/nowhere'), 404);
    await anthropic.messages.create(claudeAsk);
    await anthropicFailure(anthropic.messages.create(claudeAsk), 429);
    for (const [fault, status] of [
      [{ status: 413 }, 413],
      [{ status: 500 }, 500],
      [{ status: 529 }, 529],
      [{ billing: true }, 402],
    ] as const) {
      sim.reset();
      sim.injectFaults({ ...fault, count: 1 });
      await anthropicFailure(anthropic.messages.create(claudeAsk), status);
    }
  });

  it('Anthropic: a model id that is not valid percent-encoding is a 404 with its ids, not a 500', async () => {
    await anthropicFailure(anthropic.get('/v1/models/%E0%A4%A'), 404);
  });

  it('OpenAI: 400, 401, 404, 429 and the injected faults carry x-request-id', async () => {
    await openaiFailure(openai.chat.completions.create({ ...gptAsk, temperature: 3 }), 400);
    await openaiFailure(new OpenAI({ apiKey: 'wrong', baseURL: `${sim.url}/v1`, maxRetries: 0 }).chat.completions.create(gptAsk), 401);
    await openaiFailure(openai.chat.completions.create({ ...gptAsk, model: 'gpt-nope' }), 404);
    await openaiFailure(openai.models.retrieve('gpt-nope'), 404);
    // An id that is not valid percent-encoding is one no file has: a 404 in OpenAI's shape, not a 500.
    await openaiFailure(openai.get('/files/%E0%A4%A'), 404);
    await openai.chat.completions.create(gptAsk);
    await openaiFailure(openai.chat.completions.create(gptAsk), 429);
    for (const [fault, status] of [
      [{ status: 413 }, 413],
      [{ status: 500 }, 500],
      [{ overloaded: true }, 503],
    ] as const) {
      sim.reset();
      sim.injectFaults({ ...fault, count: 1 });
      await openaiFailure(openai.chat.completions.create(gptAsk), status);
    }
  });
});
