import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AdmissionRecord, type Pace, type Simulator, startSimulator } from './index.js';

const CLAUDE = 'claude-haiku-4-5';
const GPT = 'gpt-4o-mini';
const TOOL_SCHEMA = { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } }, required: ['city'] };

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('token-by-token streams through the official SDKs', () => {
  let sim: Simulator;
  let claude: Anthropic;
  let gpt: OpenAI;

  beforeAll(async () => {
    sim = await startSimulator({ latencyMs: 0, outputTokens: 24 });
    claude = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
    gpt = new OpenAI({ apiKey: 'k', baseURL: `${sim.url}/v1`, maxRetries: 0 });
  });
  afterEach(() => {
    sim.reset();
    sim.setPace({ latencyMs: 0, streamTokenMs: null });
  });
  afterAll(() => sim.close());

  it('answers an Anthropic request that forces a tool with a tool_use block, the same plain and streamed through messages.stream()', async () => {
    const params = {
      model: CLAUDE,
      max_tokens: 200,
      tools: [{ name: 'get_weather', description: 'Weather for a city', input_schema: TOOL_SCHEMA as Anthropic.Tool.InputSchema }],
      tool_choice: { type: 'tool' as const, name: 'get_weather' },
      messages: [{ role: 'user' as const, content: 'Weather in Paris?' }],
    };
    const plain = await claude.messages.create(params);
    expect(plain.stop_reason).toBe('tool_use');
    const [block] = plain.content;
    expect(block).toMatchObject({ type: 'tool_use', name: 'get_weather', id: expect.stringMatching(/^toolu_01/) });
    const input = (block as Anthropic.ToolUseBlock).input as Record<string, unknown>;
    expect(Object.keys(input).sort()).toEqual(['city', 'days', 'unit']);
    expect(typeof input.city).toBe('string');
    expect(input.unit).toBe('celsius');
    expect(plain.usage.output_tokens).toBeGreaterThan(0);

    const stream = claude.messages.stream(params);
    const partials: string[] = [];
    stream.on('inputJson', (partial) => partials.push(partial));
    const final = await stream.finalMessage();
    expect(final.stop_reason).toBe('tool_use');
    expect((final.content[0] as Anthropic.ToolUseBlock).input).toEqual(input);
    // One input_json_delta per output token, as text arrives one text_delta per token.
    expect(partials.length).toBe(final.usage.output_tokens);
    expect(final.usage.output_tokens).toBe(plain.usage.output_tokens);

    // Left to the model (no tool_choice), the answer is text.
    const auto = await claude.messages.create({ ...params, tool_choice: undefined });
    expect(auto.content[0]?.type).toBe('text');
  });

  it('calls the first two tools in parallel when a request lets the model pick any, unless parallel calls are off', async () => {
    const tools = ['get_weather', 'get_time', 'get_news'];
    // Anthropic: two tool_use blocks, each opened, filled and closed in turn when streamed.
    const claudeParams = {
      model: CLAUDE,
      max_tokens: 300,
      tools: tools.map((name) => ({ name, input_schema: TOOL_SCHEMA as Anthropic.Tool.InputSchema })),
      tool_choice: { type: 'any' as const },
      messages: [{ role: 'user' as const, content: 'Weather and time in Rome?' }],
    };
    const plain = await claude.messages.create(claudeParams);
    expect(plain.content.map((b) => (b as Anthropic.ToolUseBlock).name)).toEqual(['get_weather', 'get_time']);
    const final = await claude.messages.stream(claudeParams).finalMessage();
    expect(final.content.map((b) => [(b as Anthropic.ToolUseBlock).name, (b as Anthropic.ToolUseBlock).input])).toEqual(plain.content.map((b) => [(b as Anthropic.ToolUseBlock).name, (b as Anthropic.ToolUseBlock).input]));
    expect(final.usage.output_tokens).toBe(plain.usage.output_tokens);
    const single = await claude.messages.create({ ...claudeParams, tool_choice: { type: 'any', disable_parallel_tool_use: true } });
    expect(single.content).toHaveLength(1);
    // OpenAI: two tool_calls, the second opened by a chunk of its own index when streamed.
    const gptParams = {
      model: GPT,
      max_completion_tokens: 300,
      tools: tools.map((name) => ({ type: 'function' as const, function: { name, parameters: TOOL_SCHEMA } })),
      tool_choice: 'required' as const,
      messages: [{ role: 'user' as const, content: 'Weather and time in Rome?' }],
    };
    const completion = await gpt.chat.completions.create(gptParams);
    const fns = (m: OpenAI.Chat.ChatCompletionMessage) => m.tool_calls?.map((c) => (c as OpenAI.Chat.ChatCompletionMessageFunctionToolCall).function);
    expect(fns(completion.choices[0]!.message)?.map((f) => f.name)).toEqual(['get_weather', 'get_time']);
    const streamed = await gpt.chat.completions.stream({ ...gptParams, stream_options: { include_usage: true } }).finalChatCompletion();
    expect(fns(streamed.choices[0]!.message)).toEqual(fns(completion.choices[0]!.message));
    expect(streamed.usage?.completion_tokens).toBe(completion.usage?.completion_tokens);
    const one = await gpt.chat.completions.create({ ...gptParams, parallel_tool_calls: false });
    expect(one.choices[0]!.message.tool_calls).toHaveLength(1);
  });

  it('answers a Chat Completions request that forces a tool with tool_calls, the same plain and streamed through chat.completions.stream()', async () => {
    const params = {
      model: GPT,
      max_completion_tokens: 200,
      tools: [{ type: 'function' as const, function: { name: 'get_weather', parameters: TOOL_SCHEMA } }],
      tool_choice: 'required' as const,
      messages: [{ role: 'user' as const, content: 'Weather in Paris?' }],
    };
    const plain = await gpt.chat.completions.create(params);
    const choice = plain.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const call = choice.message.tool_calls?.[0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    expect(call).toMatchObject({ type: 'function', id: expect.stringMatching(/^call_/), function: { name: 'get_weather' } });
    const args = JSON.parse(call.function.arguments) as Record<string, unknown>;
    expect(Object.keys(args).sort()).toEqual(['city', 'days', 'unit']);

    const stream = gpt.chat.completions.stream({ ...params, stream_options: { include_usage: true } });
    const final = await stream.finalChatCompletion();
    const streamed = final.choices[0]!;
    expect(streamed.finish_reason).toBe('tool_calls');
    expect((streamed.message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall).function).toEqual(call.function);
    expect(final.usage?.completion_tokens).toBe(plain.usage?.completion_tokens);

    // Named, that tool (another request: its own arguments); left to the model, text.
    const named = await gpt.chat.completions.create({ ...params, tool_choice: { type: 'function', function: { name: 'get_weather' } } });
    expect(named.choices[0]!.message.tool_calls?.[0]).toMatchObject({ function: { name: 'get_weather' } });
    const auto = await gpt.chat.completions.create({ ...params, tool_choice: 'auto' });
    expect(auto.choices[0]!.message.tool_calls).toBeUndefined();
  });

  it('speaks a Chat Completions answer asked for audio output, the same plain and streamed through chat.completions.stream()', async () => {
    const params = {
      model: GPT,
      max_completion_tokens: 200,
      modalities: ['text' as const, 'audio' as const],
      audio: { voice: 'alloy' as const, format: 'pcm16' as const },
      messages: [{ role: 'user' as const, content: 'Say hello.' }],
    };
    const plain = await gpt.chat.completions.create(params);
    const message = plain.choices[0]!.message;
    expect(message.content).toBeNull();
    expect(message.audio).toMatchObject({ id: expect.stringMatching(/^audio_/), expires_at: expect.any(Number) });
    expect(message.audio!.transcript.length).toBeGreaterThan(0);
    expect(Buffer.from(message.audio!.data, 'base64').length).toBeGreaterThan(0);

    // The chunks as the API sends them: pieces of transcript and data, the id once, and an
    // expiry-only chunk that ends the choice with no finish_reason chunk after it.
    const chunks: OpenAI.Chat.ChatCompletionChunk[] = [];
    const stream = gpt.chat.completions.stream({ ...params, stream_options: { include_usage: true } });
    stream.on('chunk', (chunk) => chunks.push(chunk));
    const final = await stream.finalChatCompletion();
    const audios = chunks.flatMap((c) => c.choices.map((choice) => choice.delta.audio).filter((a) => a !== undefined));
    expect(audios.filter((a) => a.id !== undefined)).toHaveLength(1);
    expect(audios.filter((a) => a.transcript !== undefined).length).toBeGreaterThan(1);
    expect(audios.at(-1)).toEqual({ expires_at: expect.any(Number) });
    expect(chunks.flatMap((c) => c.choices).some((choice) => choice.finish_reason !== null)).toBe(false);

    const streamed = final.choices[0]!;
    expect(streamed.finish_reason).toBe('stop');
    expect(streamed.message.content).toBeNull();
    expect(streamed.message.audio?.transcript).toBe(message.audio!.transcript);
    expect(streamed.message.audio?.data).toBe(message.audio!.data);
    expect(final.usage?.completion_tokens).toBe(plain.usage?.completion_tokens);
  });

  it('streams Anthropic events in the API’s order with one text_delta per output token', async () => {
    const params = { model: CLAUDE, max_tokens: 100, messages: [{ role: 'user' as const, content: 'token by token' }] };
    const plain = await claude.messages.create(params);
    // The SDK swallows ping events, so the order is read off the wire.
    const response = await fetch(`${sim.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'k', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ ...params, stream: true }),
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await response.text())
      .split('\n\n')
      .filter((block) => block !== '')
      .map((block) => {
        const [name, data] = block.split('\n');
        return { name: name?.replace('event: ', ''), data: JSON.parse(data?.replace('data: ', '') ?? 'null') as Record<string, unknown> };
      });
    expect(events.map((e) => e.name)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      ...Array.from({ length: 24 }, () => 'content_block_delta'),
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(events.every((e) => e.data.type === e.name)).toBe(true);
    const deltas = events.filter((e) => e.name === 'content_block_delta').map((e) => e.data.delta as { type: string; text: string });
    expect(deltas.every((d) => d.type === 'text_delta' && d.text.length > 0)).toBe(true);
    expect(deltas.map((d) => d.text).join('')).toBe(plain.content[0]?.type === 'text' ? plain.content[0].text : null);
    expect(events.at(-2)?.data).toMatchObject({ delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 24 } });

    // The SDK assembles the same message from them.
    const streamed = await claude.messages.stream(params).finalMessage();
    expect(streamed.content).toEqual(plain.content);
    expect(streamed.usage).toMatchObject({ output_tokens: 24, input_tokens: plain.usage.input_tokens });
    expect(sim.stats().admissions.map((a) => [a.streamed, a.clientClosed, a.outputSent])).toEqual([
      [false, false, 24],
      [true, false, 24],
      [true, false, 24],
    ]);
  });

  it('opens an answer with signed thinking when thinking is on, the same plain and through messages.stream(), and checks a block passed back', async () => {
    const params = { model: CLAUDE, max_tokens: 2_000, thinking: { type: 'enabled' as const, budget_tokens: 1_024 }, messages: [{ role: 'user' as const, content: 'think first' }] };
    const plain = await claude.messages.create(params);
    expect(plain.content.map((b) => b.type)).toEqual(['thinking', 'text']);
    const [thinking, text] = plain.content as [Anthropic.ThinkingBlock, Anthropic.TextBlock];
    expect(thinking.thinking.length).toBeGreaterThan(0);
    expect(thinking.signature.length).toBeGreaterThan(0);
    // Thinking tokens are output tokens: 24 of thinking, 24 of answer.
    expect(plain.usage.output_tokens).toBe(48);

    const stream = claude.messages.stream(params);
    const thoughts: string[] = [];
    let signature = '';
    stream.on('thinking', (delta) => thoughts.push(delta));
    stream.on('signature', (s) => {
      signature = s;
    });
    const streamed = await stream.finalMessage();
    expect(streamed.content).toEqual(plain.content);
    expect(thoughts.join('')).toBe(thinking.thinking);
    expect(signature).toBe(thinking.signature);
    expect(streamed.usage.output_tokens).toBe(48);

    // The next turn passes the block back as it came; altered, the API's own 400.
    const next = (block: Anthropic.ThinkingBlock) => ({
      ...params,
      messages: [params.messages[0]!, { role: 'assistant' as const, content: [block, text] }, { role: 'user' as const, content: 'and then?' }],
    });
    expect((await claude.messages.create(next(thinking))).content[0]?.type).toBe('thinking');
    await expect(claude.messages.create(next({ ...thinking, thinking: `${thinking.thinking} (edited)` }))).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('messages.1.content.0: Invalid `signature` in `thinking` block'),
    });

    // Omitted thinking is billed and signed, and streams no thinking text.
    const omitted = { ...params, thinking: { ...params.thinking, display: 'omitted' as const } };
    const quiet = claude.messages.stream(omitted);
    let quietThoughts = 0;
    quiet.on('thinking', () => quietThoughts++);
    const hidden = await quiet.finalMessage();
    expect(hidden.content[0]).toMatchObject({ type: 'thinking', thinking: '', signature: expect.any(String) });
    expect(quietThoughts).toBe(0);
    expect(hidden.usage.output_tokens).toBe(48);
    expect(sim.stats().admissions.at(-1)).toMatchObject({ streamed: true, outputSent: 48 });
  });

  it('refuses thinking the API refuses: a budget under 1,024 or not below max_tokens, or with a forced tool', async () => {
    const base = { model: CLAUDE, max_tokens: 2_000, messages: [{ role: 'user' as const, content: 'hi' }] };
    const refused = async (body: Record<string, unknown>) => (await claude.messages.create({ ...base, ...body } as Anthropic.MessageCreateParamsNonStreaming).catch((err: unknown) => err)) as { status: number; message: string };
    expect(await refused({ thinking: { type: 'enabled', budget_tokens: 512 } })).toMatchObject({ status: 400, message: expect.stringContaining('thinking.enabled.budget_tokens: Input should be greater than or equal to 1024') });
    expect(await refused({ thinking: { type: 'enabled', budget_tokens: 2_000 } })).toMatchObject({ status: 400, message: expect.stringContaining('`max_tokens` must be greater than `thinking.budget_tokens`') });
    expect(await refused({ thinking: { type: 'sometimes' } })).toMatchObject({ status: 400, message: expect.stringContaining('thinking.type') });
    const tools = [{ name: 'get_weather', input_schema: TOOL_SCHEMA as Anthropic.Tool.InputSchema }];
    expect(await refused({ thinking: { type: 'enabled', budget_tokens: 1_024 }, tools, tool_choice: { type: 'tool', name: 'get_weather' } })).toMatchObject({
      status: 400,
      message: expect.stringContaining('Thinking may not be enabled when tool_choice forces tool use'),
    });
    // Off, or adaptive: accepted.
    expect((await claude.messages.create({ ...base, thinking: { type: 'disabled' } })).content.map((b) => b.type)).toEqual(['text']);
    expect((await claude.messages.create({ ...base, thinking: { type: 'adaptive' } })).content.map((b) => b.type)).toEqual(['thinking', 'text']);
  });

  it('streams OpenAI chunks: the role first, one content delta per token, the finish_reason, then usage and [DONE]', async () => {
    const body = { model: GPT, max_tokens: 100, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'chunk by chunk' }] };
    const response = await fetch(`${sim.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const lines = (await response.text()).split('\n\n').filter((line) => line !== '');
    expect(lines.every((line) => line.startsWith('data: '))).toBe(true);
    expect(lines.at(-1)).toBe('data: [DONE]');
    const chunks = lines.slice(0, -1).map((line) => JSON.parse(line.slice('data: '.length)) as OpenAI.ChatCompletionChunk);

    expect(chunks).toHaveLength(1 + 24 + 2);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0]?.id)).toBe(true);
    expect(chunks[0]?.choices[0]).toMatchObject({ delta: { role: 'assistant', content: '' }, finish_reason: null });
    const contents = chunks.slice(1, 25).map((c) => c.choices[0]?.delta.content);
    expect(contents.every((c) => typeof c === 'string' && c.length > 0)).toBe(true);
    expect(chunks[25]?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' });
    // Under include_usage every chunk carries usage, null until the last, which has no choices.
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(chunks[26]).toMatchObject({ choices: [], usage: { completion_tokens: 24 } });

    const plain = await gpt.chat.completions.create({ model: GPT, max_tokens: 100, messages: [{ role: 'user', content: 'chunk by chunk' }] });
    expect(contents.join('')).toBe(plain.choices[0]?.message.content);
    expect(chunks[26]?.usage?.prompt_tokens).toBe(plain.usage?.prompt_tokens);
  });

  it('leaves usage out of OpenAI chunks unless include_usage is asked for', async () => {
    const stream = await gpt.chat.completions.create({ model: GPT, max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'no usage' }] });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks).toHaveLength(1 + 24 + 1);
    expect(chunks.some((c) => 'usage' in c)).toBe(false);
  });

  it('paces deltas streamTokenMs apart after latencyMs, set at runtime over HTTP', async () => {
    const posted = await fetch(`${sim.url}/_sim/pace`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ latencyMs: 100, streamTokenMs: 20 }),
    });
    const pace: Pace = { latencyMs: { min: 100, max: 100 }, streamTokenMs: 20 };
    expect(await posted.json()).toEqual(pace);
    expect(await (await fetch(`${sim.url}/_sim/pace`)).json()).toEqual(pace);

    const started = performance.now();
    const arrivals: number[] = [];
    const stream = claude.messages.stream({ model: CLAUDE, max_tokens: 100, messages: [{ role: 'user', content: 'slowly' }] });
    stream.on('text', () => arrivals.push(performance.now() - started));
    await stream.finalMessage();
    const elapsed = performance.now() - started;

    // Lower bounds from the request only: the server cannot send a delta before its time (timers
    // never fire early), while a loaded client may read several at once, so gaps between
    // arrivals prove nothing.
    expect(arrivals).toHaveLength(24);
    expect(arrivals[0]).toBeGreaterThanOrEqual(100 - 5);
    expect(arrivals[23]).toBeGreaterThanOrEqual(100 + 23 * 20 - 10);
    expect(elapsed).toBeGreaterThanOrEqual(100 + 24 * 20 - 10);
  });

  it('spreads a stream over latencyMs when streamTokenMs is unset, as long as a plain call takes', async () => {
    sim.setPace({ latencyMs: 250 });
    const started = performance.now();
    const arrivals: number[] = [];
    const stream = claude.messages.stream({ model: CLAUDE, max_tokens: 100, messages: [{ role: 'user', content: 'spread' }] });
    stream.on('text', () => arrivals.push(performance.now() - started));
    await stream.finalMessage();
    // 24 deltas and the close at 25 equal steps of 10 ms.
    expect(arrivals).toHaveLength(24);
    expect(arrivals[0]).toBeGreaterThanOrEqual(10 - 5);
    expect(arrivals[23]).toBeGreaterThanOrEqual(24 * 10 - 10);
    expect(performance.now() - started).toBeGreaterThanOrEqual(250 - 10);
  });

  it('slows a stream already running when the pace changes mid-way', async () => {
    sim.setPace({ streamTokenMs: 25 });
    const finished = claude.messages.stream({ model: CLAUDE, max_tokens: 100, messages: [{ role: 'user', content: 'brownout' }] }).finalMessage();
    // Read the live count and change the pace in one synchronous step: at most `sent` deltas
    // were out when the pace changed, so every gap after the next delta is the new one.
    let sent = 0;
    await until(() => {
      sent = sim.stats().admissions[0]?.outputSent ?? 0;
      return sent > 0;
    });
    sim.setPace({ streamTokenMs: 50 });
    const slowedAt = performance.now();
    await finished;
    expect(sent).toBeLessThan(24);
    expect(performance.now() - slowedAt).toBeGreaterThanOrEqual((24 - sent) * 50 - 10);
    expect(sim.pace()).toEqual({ latencyMs: { min: 0, max: 0 }, streamTokenMs: 50 });
  });

  it('refuses a pace it cannot keep, over HTTP and in process', async () => {
    const bad = await fetch(`${sim.url}/_sim/pace`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ streamTokenMs: -1 }) });
    expect(bad.status).toBe(400);
    expect(() => sim.setPace({ latencyMs: { min: 5, max: 1 } })).toThrow(RangeError);
    expect(sim.pace()).toEqual({ latencyMs: { min: 0, max: 0 }, streamTokenMs: null });
  });
});

describe('a stream the client closes is charged what it had sent', () => {
  let sim: Simulator;
  // A frozen clock: the buckets never refill, so what is left in them is exactly what was charged.
  const now = Date.UTC(2026, 0, 1);

  beforeAll(async () => {
    sim = await startSimulator({
      latencyMs: 0,
      streamTokenMs: 15,
      outputTokens: 200,
      clock: () => now,
      models: {
        [CLAUDE]: { provider: 'anthropic', limits: { rpm: 100, itpm: 100_000, otpm: 1000 } },
        [GPT]: { provider: 'openai', limits: { rpm: 100, tpm: 10_000 } },
      },
    });
  });
  afterEach(() => {
    sim.reset();
    sim.setPace({ streamTokenMs: 15 });
  });
  afterAll(() => sim.close());

  const admission = (): AdmissionRecord => {
    const [first] = sim.stats().admissions;
    if (!first) throw new Error('no admission yet');
    return first;
  };

  it('Anthropic: stops generating at the close and refunds output tokens/min to what was sent', async () => {
    const claude = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
    const stream = claude.messages.stream({ model: CLAUDE, max_tokens: 1000, messages: [{ role: 'user', content: 'a long answer' }] });
    let received = 0;
    stream.on('text', () => {
      received += 1;
      if (received === 5) stream.abort();
    });
    await expect(stream.finalMessage()).rejects.toBeInstanceOf(Anthropic.APIUserAbortError);
    await until(() => admission().done);

    const cut = admission();
    expect(cut).toMatchObject({ streamed: true, clientClosed: true, done: true });
    expect(cut.outputSent).toBeGreaterThanOrEqual(5);
    expect(cut.outputSent).toBeLessThan(200);
    expect(cut.output).toBe(cut.outputSent);
    expect(sim.stats().models[CLAUDE]).toMatchObject({ clientClosed: 1, outputTokens: cut.outputSent });

    // 1000 reserved, all but the tokens sent given back: exactly 1000 - sent fits, one more does not.
    const room = 1000 - cut.outputSent;
    const ask = (max_tokens: number) => claude.messages.create({ model: CLAUDE, max_tokens, messages: [{ role: 'user', content: 'fit?' }] });
    await expect(ask(room + 1)).rejects.toBeInstanceOf(Anthropic.RateLimitError);
    await expect(ask(room)).resolves.toMatchObject({ type: 'message' });
  });

  it('OpenAI: stops generating at the close and corrects tokens/min to the prompt plus what was sent', async () => {
    const gpt = new OpenAI({ apiKey: 'k', baseURL: `${sim.url}/v1`, maxRetries: 0 });
    const stream = await gpt.chat.completions.create({
      model: GPT,
      max_tokens: 1000,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'a long answer' }],
    });
    let received = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) received += 1;
      if (received === 5) break; // leaving the loop aborts the request
    }
    await until(() => admission().done);

    const cut = admission();
    expect(cut).toMatchObject({ streamed: true, clientClosed: true, output: cut.outputSent });
    expect(cut.outputSent).toBeGreaterThanOrEqual(5);
    expect(cut.outputSent).toBeLessThan(200);

    const { data, response } = await gpt.chat.completions.create({ model: GPT, max_tokens: 50, messages: [{ role: 'user', content: 'after' }] }).withResponse();
    const usage = data.usage;
    if (!usage) throw new Error('no usage');
    expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBe(10_000 - (cut.input + cut.outputSent) - usage.total_tokens);
  });

  it('charges the whole answer when the simulator cuts the stream itself, and says it was not the client', async () => {
    sim.injectFaults({ cut: true, count: 1 });
    sim.setPace({ streamTokenMs: 0 }); // afterEach restores 15
    const claude = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
    await expect(claude.messages.stream({ model: CLAUDE, max_tokens: 1000, messages: [{ role: 'user', content: 'cut' }] }).finalMessage()).rejects.toBeInstanceOf(Error);
    await until(() => admission().done);
    expect(admission()).toMatchObject({ streamed: true, clientClosed: false, output: 200, outputSent: 100 });
    expect(sim.stats().models[CLAUDE]).toMatchObject({ clientClosed: 0, faultsInjected: { cut: 1 } });
  });

  it('hangs a call, plain or streamed, with no head until the client gives up: only its request is charged', async () => {
    sim.injectFaults({ hang: true, count: 3 });
    const claude = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0, timeout: 300 });
    const gpt = new OpenAI({ apiKey: 'k', baseURL: `${sim.url}/v1`, maxRetries: 0, timeout: 300 });
    await expect(claude.messages.create({ model: CLAUDE, max_tokens: 20, messages: [{ role: 'user', content: 'hang' }] })).rejects.toBeInstanceOf(Anthropic.APIConnectionTimeoutError);
    await expect(claude.messages.create({ model: CLAUDE, max_tokens: 20, stream: true, messages: [{ role: 'user', content: 'hang' }] })).rejects.toBeInstanceOf(Anthropic.APIConnectionTimeoutError);
    await expect(gpt.chat.completions.create({ model: GPT, max_tokens: 20, stream: true, messages: [{ role: 'user', content: 'hang' }] })).rejects.toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    expect(sim.stats().models[CLAUDE]).toMatchObject({ faultsInjected: { hang: 2 }, outputTokens: 0 });
    expect(sim.stats().models[GPT]).toMatchObject({ faultsInjected: { hang: 1 }, outputTokens: 0 });
    expect(sim.stats().admissions.every((a) => a.done && a.output === 0)).toBe(true);
  });

  it('stalls a stream half-way, and a plain answer half-way through its body, holding the line silent until the client gives up', async () => {
    sim.injectFaults({ stall: true, count: 2 });
    sim.setPace({ streamTokenMs: 0 });
    const claude = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0, timeout: 400 });
    const stopped = new AbortController();
    const deltas: string[] = [];
    const stream = claude.messages.stream({ model: CLAUDE, max_tokens: 1000, messages: [{ role: 'user', content: 'stall' }] }, { signal: stopped.signal });
    stream.on('text', (t) => deltas.push(t));
    // Half the answer comes, then nothing: the stream is still open when the client gives up.
    await until(() => deltas.length === 100);
    await new Promise((r) => setTimeout(r, 100));
    expect(deltas).toHaveLength(100);
    stopped.abort();
    await expect(stream.finalMessage()).rejects.toBeInstanceOf(Anthropic.APIUserAbortError);
    await until(() => admission().done);
    expect(admission()).toMatchObject({ streamed: true, clientClosed: false, output: 200, outputSent: 100 });
    // A plain call's head and half its body come; the SDK's timeout covers the head only, so the
    // caller's own abort ends the wait for the rest.
    const plain = new AbortController();
    const body = claude.messages.create({ model: CLAUDE, max_tokens: 20, messages: [{ role: 'user', content: 'stall' }] }, { signal: plain.signal });
    setTimeout(() => plain.abort(), 300);
    await expect(body).rejects.toBeInstanceOf(Error);
    expect(sim.stats().models[CLAUDE]).toMatchObject({ faultsInjected: { stall: 2 } });
  });
});
