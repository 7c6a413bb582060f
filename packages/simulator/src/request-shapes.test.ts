// Bodies the official SDKs can send that are well formed but unusual: a null where the SDK types
// allow one is the field left out (the same answer), and a malformed part is the API's 400, never
// the simulator's 500.

import Anthropic from '@anthropic-ai/sdk';
import OpenAI, { type APIError } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from './index.js';

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

const GPT = 'gpt-4o-mini';
const CLAUDE = 'claude-haiku-4-5';

describe('nullable and malformed request fields', () => {
  let sim: Simulator;
  let openai: OpenAI;
  let anthropic: Anthropic;

  beforeAll(async () => {
    sim = await startSimulator({
      latencyMs: 0,
      outputTokens: 30,
      apiKeys: ['sk-test'],
      models: {
        [GPT]: { provider: 'openai', limits: { rpm: 1000, tpm: 1_000_000 } },
        [CLAUDE]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 1_000_000, otpm: 1_000_000 } },
      },
    });
    openai = new OpenAI({ apiKey: 'sk-test', baseURL: `${sim.url}/v1`, maxRetries: 0 });
    anthropic = new Anthropic({ apiKey: 'sk-test', baseURL: sim.url, maxRetries: 0 });
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  it('answers a Responses call with tools: null and other nulls as the same call without them', async () => {
    const plain = { model: GPT, input: 'Tell me about lanes.', max_output_tokens: 100 };
    const nulls = { tools: null, instructions: null, temperature: null, reasoning: null, top_p: null, store: null, truncation: null, stream: null };
    const withNulls = await openai.responses.create({ ...plain, ...nulls } as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming);
    const without = await openai.responses.create(plain);
    expect(withNulls.status).toBe('completed');
    expect(withNulls.output_text).toBe(without.output_text);
    expect(withNulls.output_text.length).toBeGreaterThan(0);
    expect(withNulls.tools).toEqual([]);
    expect(withNulls.usage?.input_tokens).toBe(without.usage?.input_tokens);
  });

  it('answers a Chat call with every SDK-nullable field null as the same call without them', async () => {
    const plain = { model: GPT, messages: [{ role: 'user' as const, content: 'Tell me about lanes.' }] };
    const nulls = {
      max_tokens: null,
      max_completion_tokens: null,
      n: null,
      stop: null,
      stream: null,
      stream_options: null,
      temperature: null,
      top_p: null,
      logprobs: null,
      top_logprobs: null,
      seed: null,
      metadata: null,
      service_tier: null,
      reasoning_effort: null,
    };
    const withNulls = await openai.chat.completions.create({ ...plain, ...nulls });
    const without = await openai.chat.completions.create(plain);
    expect(withNulls.choices[0]?.message.content).toBe(without.choices[0]?.message.content);
    expect(withNulls.choices).toHaveLength(1);
    expect(withNulls.usage).toEqual(without.usage);
  });

  it('answers a Messages call with its SDK-nullable fields null as the same call without them', async () => {
    const plain = { model: CLAUDE, max_tokens: 100, messages: [{ role: 'user' as const, content: 'Tell me about lanes.' }] };
    const withNulls = await anthropic.messages.create({ ...plain, container: null, inference_geo: null, speed: null, cache_control: null });
    const without = await anthropic.messages.create(plain);
    expect(withNulls.content).toEqual(without.content);
    expect(withNulls.usage.input_tokens).toBe(without.usage.input_tokens);
  });

  it('refuses malformed parts with the API’s 400, not a 500', async () => {
    const part = await failure(
      openai.chat.completions.create({ model: GPT, messages: [{ role: 'user', content: [null] }] } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
    );
    expect(part).toBeInstanceOf(OpenAI.BadRequestError);
    expect((part as APIError).param).toBe('messages[0].content[0]');

    const chatTool = await failure(
      openai.chat.completions.create({ model: GPT, messages: [{ role: 'user', content: 'hi' }], tools: [null] } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
    );
    expect(chatTool).toBeInstanceOf(OpenAI.BadRequestError);
    expect((chatTool as APIError).param).toBe('tools[0]');

    const result = await failure(
      anthropic.messages.create({
        model: CLAUDE,
        max_tokens: 50,
        messages: [
          { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'look', input: {} }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: null }] },
        ],
      } as unknown as Anthropic.MessageCreateParamsNonStreaming),
    );
    expect(result).toBeInstanceOf(Anthropic.BadRequestError);
    expect((result as Error).message).toContain('messages.1.content.0.content');

    const anthropicTool = await failure(
      anthropic.messages.create({ model: CLAUDE, max_tokens: 50, messages: [{ role: 'user', content: 'hi' }], tools: [null] } as unknown as Anthropic.MessageCreateParamsNonStreaming),
    );
    expect(anthropicTool).toBeInstanceOf(Anthropic.BadRequestError);
    expect((anthropicTool as Error).message).toContain('tools.0: Input should be a valid dictionary');
  });

  it('counts a tool result with blocks or no content, as the API takes both', async () => {
    const answered = await anthropic.messages.create({
      model: CLAUDE,
      max_tokens: 50,
      messages: [
        { role: 'user', content: 'look it up' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'look', input: {} }] },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: 'found it' }] },
            { type: 'tool_result', tool_use_id: 'toolu_2' },
          ],
        },
      ],
    });
    expect(answered.stop_reason).toBe('end_turn');
    expect(answered.usage.input_tokens).toBeGreaterThan(0);
  });
});
