/**
 * A streamed call's stored answer is the one the SDKs' own stream helpers assemble from the same
 * events (`ChatCompletionStream`, `MessageStream`): the result a `producer.stream()` reads, and
 * the one a repeat of the call is streamed from once its events expired, keeps every field the
 * client's helper kept the first time. The OpenAI events come from the simulator through the
 * official SDK; the fields the simulator never sends (a refusal's logprobs, the legacy
 * `function_call`, a custom tool's call, Anthropic's `container` and `stop_details`) come as event sequences in the
 * shapes the providers' API references and SDK types give them.
 */
import type Anthropic from '@anthropic-ai/sdk';
import { MessageStream } from '@anthropic-ai/sdk/lib/MessageStream';
import { type Simulator, startSimulator } from '@headroom/simulator';
import OpenAI from 'openai';
import { ChatCompletionStream } from 'openai/lib/ChatCompletionStream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicStreamAccumulator } from './anthropic-stream.js';
import { OpenAIStreamAccumulator } from './openai-stream.js';
import type { StreamAccumulator } from './sdk-stream.js';

type Json = Record<string, unknown>;

/** The events as the SDKs' `toReadableStream()` writes them: one JSON value a line. */
const readable = (events: Json[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const event of events) controller.enqueue(new TextEncoder().encode(`${JSON.stringify(event)}\n`));
      controller.close();
    },
  });

function assembled(events: Json[], acc: StreamAccumulator<Json>): Json {
  for (const event of events) acc.add(event);
  const done = acc.finish();
  if (!('response' in done)) throw new Error(done.incomplete);
  // As stored: the result is JSON in Redis.
  return JSON.parse(JSON.stringify(done.response)) as Json;
}

/** The SDK's completion, less the `parsed: null` its helper adds to each message (no wire field). */
async function sdkCompletion(chunks: Json[]): Promise<OpenAI.ChatCompletion> {
  const completion = await ChatCompletionStream.fromReadableStream(readable(chunks)).finalChatCompletion();
  for (const choice of completion.choices) delete (choice.message as { parsed?: unknown }).parsed;
  return JSON.parse(JSON.stringify(completion)) as OpenAI.ChatCompletion;
}
/** The SDK's message, less the `parsed_output: null` its helper adds (no wire field). */
async function sdkMessage(events: Json[]): Promise<Anthropic.Message> {
  const { parsed_output: _parsed, ...message } = (await MessageStream.fromReadableStream(readable(events)).finalMessage()) as Anthropic.Message & { parsed_output?: unknown };
  return JSON.parse(JSON.stringify(message)) as Anthropic.Message;
}

describe('OpenAI Chat Completions: the stored completion is ChatCompletionStream.finalChatCompletion()', () => {
  let sim: Simulator;
  beforeAll(async () => {
    sim = await startSimulator({ latencyMs: 0, outputTokens: { min: 12, max: 12 } });
  });
  afterAll(async () => {
    await sim.close();
  });

  it('keeps the logprobs of every content token, each chunk’s entries appended (two choices)', async () => {
    const openai = new OpenAI({ apiKey: 'sk-test', baseURL: `${sim.url}/v1`, maxRetries: 0 });
    const stream = await openai.chat.completions.create({
      model: 'gpt-4.1',
      max_completion_tokens: 32,
      n: 2,
      logprobs: true,
      top_logprobs: 2,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'Say something short.' }],
    });
    const chunks: Json[] = [];
    for await (const chunk of stream) chunks.push(chunk as unknown as Json);

    const ours = assembled(chunks, new OpenAIStreamAccumulator(true)) as unknown as OpenAI.ChatCompletion;
    const sdk = await sdkCompletion(chunks);
    expect(ours.choices).toEqual(sdk.choices);
    expect(ours.choices).toHaveLength(2);
    for (const choice of ours.choices) expect(choice.logprobs?.content?.length).toBe(12);
    expect(ours.choices[0]!.logprobs!.content![0]!.top_logprobs).toHaveLength(2);
  });

  it('keeps a spoken answer (audio output): its id, data and transcript joined, its expiry, as the plain call answers', async () => {
    const openai = new OpenAI({ apiKey: 'sk-test', baseURL: `${sim.url}/v1`, maxRetries: 0 });
    const params = {
      model: 'gpt-4.1',
      max_completion_tokens: 32,
      modalities: ['text' as const, 'audio' as const],
      audio: { voice: 'alloy' as const, format: 'pcm16' as const },
      messages: [{ role: 'user' as const, content: 'Say something short.' }],
    };
    const plain = await openai.chat.completions.create(params);
    const stream = await openai.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    const chunks: Json[] = [];
    for await (const chunk of stream) chunks.push(chunk as unknown as Json);

    const acc = new OpenAIStreamAccumulator(true);
    const ours = assembled(chunks, acc) as unknown as OpenAI.ChatCompletion;
    expect(ours.choices).toEqual((await sdkCompletion(chunks)).choices);
    const [spoken] = ours.choices;
    const { id: _id, expires_at: _expiry, ...sound } = plain.choices[0]!.message.audio!;
    expect(spoken!.message.audio).toEqual({ ...sound, id: expect.stringMatching(/^audio_/), expires_at: expect.any(Number) });
    expect(spoken!.message.content).toBeNull();
    expect(spoken!.finish_reason).toBe('stop');
    // The transcript is the output a cancelled stream is charged for.
    expect(acc.outputText()).toBe(sound.transcript);
  });

  it('keeps parallel tool calls whose pieces interleave, each by its index', async () => {
    const call = (index: number, fields: Json) => ({ tool_calls: [{ index, ...fields }] });
    const chunks = [
      chunk({ role: 'assistant', content: null, ...call(0, { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '' } }) }),
      chunk(call(1, { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '' } })),
      chunk(call(0, { function: { arguments: '{"city":' } })),
      chunk(call(1, { function: { arguments: '{"tz":"CET"}' } })),
      chunk(call(0, { function: { arguments: '"Oslo"}' } })),
      chunk({}, null, 'tool_calls'),
      usage,
    ];
    const ours = assembled(chunks, new OpenAIStreamAccumulator(true)) as unknown as OpenAI.ChatCompletion;
    expect(ours.choices).toEqual((await sdkCompletion(chunks)).choices);
    expect(ours.choices[0]!.message.tool_calls).toEqual([
      { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
      { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{"tz":"CET"}' } },
    ]);
  });

  const base = { id: 'chatcmpl-9', object: 'chat.completion.chunk', created: 1_750_000_000, model: 'gpt-4.1-2025-04-14', system_fingerprint: 'fp_9', service_tier: 'default' };
  const token = (t: string, logprob: number) => ({ token: t, logprob, bytes: [...Buffer.from(t)], top_logprobs: [{ token: t, logprob, bytes: [...Buffer.from(t)] }] });
  const chunk = (delta: Json, logprobs: Json | null = null, finish: string | null = null): Json => ({ ...base, choices: [{ index: 0, delta, logprobs, finish_reason: finish }] });
  const usage: Json = { ...base, choices: [], usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 } };

  it("keeps a refusal's logprobs, appended as its content's are", async () => {
    const chunks = [
      chunk({ role: 'assistant', content: null, refusal: '' }, { content: null, refusal: [] }),
      chunk({ refusal: "I'm" }, { content: null, refusal: [token("I'm", -0.01)] }),
      chunk({ refusal: ' sorry' }, { content: null, refusal: [token(' sorry', -0.02)] }),
      chunk({}, null, 'stop'),
      usage,
    ];
    const ours = assembled(chunks, new OpenAIStreamAccumulator(true)) as unknown as OpenAI.ChatCompletion;
    expect(ours.choices).toEqual((await sdkCompletion(chunks)).choices);
    expect(ours.choices[0]!.logprobs).toEqual({ content: null, refusal: [token("I'm", -0.01), token(' sorry', -0.02)] });
  });

  it('keeps the legacy function_call: its name, and its arguments in pieces', async () => {
    const chunks = [
      chunk({ role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '' } }),
      chunk({ function_call: { arguments: '{"city":' } }),
      chunk({ function_call: { arguments: '"Oslo"}' } }),
      chunk({}, null, 'function_call'),
      usage,
    ];
    const acc = new OpenAIStreamAccumulator(true);
    const ours = assembled(chunks, acc) as unknown as OpenAI.ChatCompletion;
    expect(ours.choices).toEqual((await sdkCompletion(chunks)).choices);
    expect(ours.choices[0]!.message.function_call).toEqual({ name: 'get_weather', arguments: '{"city":"Oslo"}' });
    // The arguments are output, counted as a tool call's are.
    expect(acc.outputText()).toBe('{"city":"Oslo"}');
  });

  it("keeps a custom tool's call (type custom): its name, and its free-form input in pieces", async () => {
    const chunks = [
      chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_7', type: 'custom', custom: { name: 'grep', input: '' } }] }),
      chunk({ tool_calls: [{ index: 0, custom: { input: 'foo ' } }] }),
      chunk({ tool_calls: [{ index: 0, custom: { input: 'src/' } }] }),
      chunk({}, null, 'tool_calls'),
      usage,
    ];
    const acc = new OpenAIStreamAccumulator(true);
    const ours = assembled(chunks, acc) as unknown as OpenAI.ChatCompletion;
    expect(ours.choices).toEqual((await sdkCompletion(chunks)).choices);
    expect(ours.choices[0]!.message.tool_calls).toEqual([{ id: 'call_7', type: 'custom', custom: { name: 'grep', input: 'foo src/' } }]);
    expect(acc.outputText()).toBe('foo src/');
  });
});

describe('Anthropic Messages: the stored message is MessageStream.finalMessage()', () => {
  const events = (delta: Json): Json[] => [
    {
      type: 'message_start',
      message: {
        id: 'msg_01',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-6',
        content: [],
        stop_reason: null,
        stop_sequence: null,
        stop_details: null,
        container: null,
        usage: { input_tokens: 20, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      },
    },
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'I can’t help with that.' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta, usage: { input_tokens: 20, output_tokens: 9, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 } },
    { type: 'message_stop' },
  ];

  it("keeps a refusal's stop_details", async () => {
    const stream = events({ stop_reason: 'refusal', stop_sequence: null, stop_details: { type: 'refusal', category: 'cyber', explanation: 'Exploit development.' }, container: null });
    const ours = assembled(stream, new AnthropicStreamAccumulator());
    expect(ours).toEqual(await sdkMessage(stream));
    expect(ours.stop_details).toEqual({ type: 'refusal', category: 'cyber', explanation: 'Exploit development.' });
  });

  it("keeps the code execution tool's container", async () => {
    const container = { id: 'container_011', expires_at: '2026-12-07T01:00:00Z', skills: null };
    const stream = events({ stop_reason: 'end_turn', stop_sequence: null, stop_details: null, container });
    const ours = assembled(stream, new AnthropicStreamAccumulator());
    expect(ours).toEqual(await sdkMessage(stream));
    expect(ours.container).toEqual(container);
  });
});
