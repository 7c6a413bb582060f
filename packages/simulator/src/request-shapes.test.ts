// Bodies the official SDKs can send that are well formed but unusual: a null where the SDK types
// allow one is the field left out (the same answer), and a malformed part is the API's 400, never
// the simulator's 500. Requests the real APIs refuse are refused the same way, in their shapes.

import Anthropic from '@anthropic-ai/sdk';
import OpenAI, { type APIError } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Simulator } from './index.js';
import { CLAUDE, failure, GPT, simulatorWithClients } from './sdk-clients.fixture.js';


describe('nullable and malformed request fields', () => {
  let sim: Simulator;
  let openai: OpenAI;
  let anthropic: Anthropic;

  beforeAll(async () => {
    ({ sim, openai, anthropic } = await simulatorWithClients());
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

  const chatAsk = { model: GPT, messages: [{ role: 'user' as const, content: 'hi' }] };
  const chatRefusal = async (body: object) => (await failure(openai.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming))) as APIError;

  it('Chat: refuses what the API refuses, with its message, param and code', async () => {
    const hot = await chatRefusal({ ...chatAsk, temperature: 3 });
    expect(hot).toBeInstanceOf(OpenAI.BadRequestError);
    expect(hot.message).toContain("Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead.");
    expect([hot.param, hot.code]).toEqual(['temperature', 'decimal_above_max_value']);

    const options = await chatRefusal({ ...chatAsk, stream_options: { include_usage: true } });
    expect(options).toBeInstanceOf(OpenAI.BadRequestError);
    expect(options.message).toContain("The 'stream_options' parameter is only allowed when 'stream' is enabled.");

    const unknown = await chatRefusal({ ...chatAsk, frobnicate: 1 });
    expect(unknown).toBeInstanceOf(OpenAI.BadRequestError);
    expect(unknown.message).toContain('Unrecognized request argument supplied: frobnicate');

    const empty = await chatRefusal({ model: GPT, messages: [{ role: 'user', content: [] }] });
    expect(empty).toBeInstanceOf(OpenAI.BadRequestError);
    expect([empty.param, empty.code]).toEqual(['messages[0].content', 'empty_array']);
  });

  it('Chat: refuses max_tokens and max_completion_tokens together, as the API does (one of them null is fine)', async () => {
    const both = await chatRefusal({ ...chatAsk, max_tokens: 50, max_completion_tokens: 50 });
    expect(both).toBeInstanceOf(OpenAI.BadRequestError);
    expect(both.message).toContain("Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.");
    expect([both.type, both.param, both.code]).toEqual(['invalid_request_error', 'max_tokens', 'invalid_parameter_combination']);

    const one = await openai.chat.completions.create({ ...chatAsk, max_tokens: null, max_completion_tokens: 50 });
    expect(one.choices[0]?.finish_reason).toBe('stop');
  });

  it('Chat: refuses a tool message that answers no tool call, as the API does', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'look', parameters: { type: 'object', properties: {} } } }];
    const call = { id: 'call_1', type: 'function' as const, function: { name: 'look', arguments: '{}' } };
    const orphans: [string, OpenAI.ChatCompletionMessageParam[], number][] = [
      ['first', [{ role: 'tool', tool_call_id: 'call_1', content: 'found' }], 0],
      ['after a user', [{ role: 'user', content: 'look' }, { role: 'tool', tool_call_id: 'call_1', content: 'found' }], 1],
      ['after an assistant without calls', [{ role: 'user', content: 'look' }, { role: 'assistant', content: 'ok' }, { role: 'tool', tool_call_id: 'call_1', content: 'found' }], 2],
      [
        'after the calls were answered and a user spoke',
        [{ role: 'user', content: 'look' }, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: 'call_1', content: 'found' }, { role: 'user', content: 'again' }, { role: 'tool', tool_call_id: 'call_1', content: 'found' }],
        4,
      ],
    ];
    for (const [name, messages, at] of orphans) {
      const refused = await chatRefusal({ model: GPT, tools, messages });
      expect(refused, name).toBeInstanceOf(OpenAI.BadRequestError);
      expect(refused.message).toContain("Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.");
      expect([refused.type, refused.param, refused.code]).toEqual(['invalid_request_error', `messages.[${at}].role`, null]);
    }

    // Two parallel calls answered by two tool messages in a row are a response, both of them.
    const answered = await openai.chat.completions.create({
      model: GPT,
      tools,
      messages: [
        { role: 'user', content: 'look' },
        { role: 'assistant', content: null, tool_calls: [call, { ...call, id: 'call_2' }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'found' },
        { role: 'tool', tool_call_id: 'call_2', content: 'found too' },
      ],
    });
    expect(answered.choices[0]?.finish_reason).toBe('stop');
  });

  it("Chat: refuses tool calls not all answered by the tool messages after them, naming the ids left, as the API does", async () => {
    const tools = [{ type: 'function' as const, function: { name: 'look', parameters: { type: 'object', properties: {} } } }];
    const call = (id: string) => ({ id, type: 'function' as const, function: { name: 'look', arguments: '{}' } });
    const answer = (id: string) => ({ role: 'tool' as const, tool_call_id: id, content: 'found' });
    const unanswered: [string, OpenAI.ChatCompletionMessageParam[], number, string][] = [
      ['the history ends on the calls', [{ role: 'user', content: 'look' }, { role: 'assistant', content: null, tool_calls: [call('call_1')] }], 1, 'call_1'],
      ['a user speaks before the answers', [{ role: 'user', content: 'look' }, { role: 'assistant', content: null, tool_calls: [call('call_1')] }, { role: 'user', content: 'well?' }], 1, 'call_1'],
      [
        'one of two parallel calls answered',
        [{ role: 'user', content: 'look' }, { role: 'assistant', content: null, tool_calls: [call('call_1'), call('call_2'), call('call_3')] }, answer('call_2')],
        1,
        'call_1, call_3',
      ],
      [
        'a later turn left open',
        [{ role: 'user', content: 'look' }, { role: 'assistant', content: null, tool_calls: [call('call_1')] }, answer('call_1'), { role: 'assistant', content: null, tool_calls: [call('call_9')] }, { role: 'user', content: 'and?' }],
        3,
        'call_9',
      ],
    ];
    for (const [name, messages, at, ids] of unanswered) {
      const refused = await chatRefusal({ model: GPT, tools, messages });
      expect(refused, name).toBeInstanceOf(OpenAI.BadRequestError);
      expect(refused.message, name).toContain(
        `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${ids}`,
      );
      expect([refused.type, refused.param, refused.code], name).toEqual(['invalid_request_error', `messages.[${at}].role`, null]);
    }
    // Answers in another order than the calls still answer them all.
    const reordered = await openai.chat.completions.create({
      model: GPT,
      tools,
      messages: [{ role: 'user', content: 'look' }, { role: 'assistant', content: null, tool_calls: [call('call_1'), call('call_2')] }, answer('call_2'), answer('call_1')],
    });
    expect(reordered.choices[0]?.finish_reason).toBe('stop');
  });

  it('Chat: takes the bounds themselves, stream_options on a stream, and every field the SDK types', async () => {
    const edge = await openai.chat.completions.create({ ...chatAsk, temperature: 2, top_p: 0, seed: 1, user: 'u', store: false, parallel_tool_calls: true, logit_bias: {}, presence_penalty: 0 });
    expect(edge.choices[0]?.finish_reason).toBe('stop');
    const stream = await openai.chat.completions.create({ ...chatAsk, stream: true, stream_options: { include_usage: true } });
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    expect(usage?.completion_tokens).toBeGreaterThan(0);
  });

  it('Responses: refuses a temperature above 2', async () => {
    const hot = (await failure(openai.responses.create({ model: GPT, input: 'hi', temperature: 3 }))) as APIError;
    expect(hot).toBeInstanceOf(OpenAI.BadRequestError);
    expect([hot.param, hot.code]).toEqual(['temperature', 'decimal_above_max_value']);
  });

  const claudeAsk = { model: CLAUDE, max_tokens: 50, messages: [{ role: 'user' as const, content: 'hi' }] };

  it('Messages: refuses an unknown field and empty content, as the API does', async () => {
    const unknown = await failure(anthropic.messages.create({ ...claudeAsk, frobnicate: 1 } as unknown as Anthropic.MessageCreateParamsNonStreaming));
    expect(unknown).toBeInstanceOf(Anthropic.BadRequestError);
    expect((unknown as Error).message).toContain('frobnicate: Extra inputs are not permitted');

    const counted = await failure(anthropic.messages.countTokens({ model: CLAUDE, messages: claudeAsk.messages, frobnicate: 1 } as unknown as Anthropic.MessageCountTokensParams));
    expect((counted as Error).message).toContain('frobnicate: Extra inputs are not permitted');

    for (const content of ['', []]) {
      const empty = await failure(anthropic.messages.create({ ...claudeAsk, messages: [{ role: 'user', content }] }));
      expect(empty).toBeInstanceOf(Anthropic.BadRequestError);
      expect((empty as Error).message).toContain('messages.0: all messages must have non-empty content except for the optional final assistant message');
    }
  });

  it('Messages: takes an empty final assistant message (a prefill) and temperature, top_k, top_p', async () => {
    const answered = await anthropic.messages.create({
      ...claudeAsk,
      messages: [...claudeAsk.messages, { role: 'assistant', content: '' }],
      temperature: 0.5,
      top_k: 5,
      top_p: 0.9,
    } as Anthropic.MessageCreateParamsNonStreaming);
    expect(answered.stop_reason).toBe('end_turn');
  });
});
