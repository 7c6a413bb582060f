/**
 * The request features a service using the official SDKs sends, each made straight to the
 * provider (the simulator) and through the gateway with the same client code: the answers must be
 * the same but for the ids each call makes anew. A baseURL change is the whole adoption only if
 * every one of these survives the gateway's checks, the job and the worker's SDK call unchanged.
 * (Tool calls, thinking, n choices, include_usage, typed nulls and betas: `gateway.test.ts`.)
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GPT, PROVIDER_KEY, SONNET, startGatewayStack, type GatewayStack } from '../support/gateway-fleet.js';

let stack: GatewayStack;
interface Clients {
  anthropic: Anthropic;
  openai: OpenAI;
}
let direct: Clients;
let gateway: Clients;

beforeAll(async () => {
  stack = await startGatewayStack({ latencyMs: 2 });
  direct = {
    anthropic: new Anthropic({ apiKey: PROVIDER_KEY, baseURL: stack.sim.url, maxRetries: 0 }),
    openai: new OpenAI({ apiKey: PROVIDER_KEY, baseURL: `${stack.sim.url}/v1`, maxRetries: 0 }),
  };
  gateway = { anthropic: stack.fleet.anthropic(), openai: stack.fleet.openai() };
});
afterAll(async () => stack?.close());

/** What each call makes anew (message, tool call and completion ids and what quotes them, timestamps, a thinking block's nonce): never the same twice. */
const FRESH = new Set(['id', 'tool_call_id', 'created', 'signature', '_request_id']);
const withoutFresh = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (k, v: unknown) => (FRESH.has(k) ? '<fresh>' : v)));

/** The same client code straight to the provider and through the gateway: the same answer. */
async function expectSameAnswer(call: (clients: Clients) => Promise<unknown>): Promise<void> {
  const directly = withoutFresh(await call(direct));
  expect(withoutFresh(await call(gateway))).toEqual(directly);
}

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const events: T[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

const PNG_1PX = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const user = (content: Anthropic.MessageParam['content']): Anthropic.MessageParam[] => [{ role: 'user', content }];
const claude = { model: SONNET, max_tokens: 60 };
const gpt = { model: GPT, max_completion_tokens: 60 };
const weatherTool = { name: 'get_weather', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] } };
const answerSchema = { type: 'object', properties: { n: { type: 'integer' }, unit: { type: 'string' } }, required: ['n', 'unit'], additionalProperties: false };

describe('the request features SDK users send, through the gateway as straight to the provider', () => {
  it('Anthropic: system as a string and as blocks, base64 images, documents with citations, stop_sequences, metadata, tool_choice, output_config and service_tier', async () => {
    const bodies: Anthropic.MessageCreateParamsNonStreaming[] = [
      { ...claude, system: 'Answer tersely.', messages: user('hello') },
      { ...claude, system: [{ type: 'text', text: 'Answer tersely.' }, { type: 'text', text: 'In English.' }], messages: user('hello') },
      { ...claude, messages: user([{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG_1PX } }, { type: 'text', text: 'What is in the picture?' }]) },
      { ...claude, messages: user([{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'The sky is blue.' }, title: 'facts', citations: { enabled: true } }, { type: 'text', text: 'What colour is the sky?' }]) },
      { ...claude, max_tokens: 200, stop_sequences: ['the', 'queue'], messages: user('tell me a long story') },
      { ...claude, metadata: { user_id: 'user-8d1f' }, messages: user('hello') },
      { ...claude, tools: [weatherTool], tool_choice: { type: 'any', disable_parallel_tool_use: true }, messages: user('weather in Oslo?') },
      { ...claude, tools: [weatherTool], tool_choice: { type: 'none' }, messages: user('weather in Oslo?') },
      { ...claude, max_tokens: 200, output_config: { format: { type: 'json_schema', schema: answerSchema } }, messages: user('how far?') },
      { ...claude, service_tier: 'standard_only', messages: user('hello') },
    ];
    for (const body of bodies) await expectSameAnswer((c) => c.anthropic.messages.create(body));
  });

  it('Anthropic: a stream whose stop sequence ends it before its first token (an empty text block) and a stream with citations, event for event', async () => {
    const opening = (await direct.anthropic.messages.create({ ...claude, messages: user('a story') })).content[0];
    const firstWord = opening?.type === 'text' ? opening.text.split(' ')[0] : undefined;
    expect(firstWord).toBeTruthy();
    const stopped = { ...claude, stop_sequences: [firstWord!], messages: user('a story') };
    await expectSameAnswer(async (c) => collect(await c.anthropic.messages.create({ ...stopped, stream: true })));
    await expectSameAnswer(async (c) => {
      const final = await c.anthropic.messages.stream(stopped).finalMessage();
      expect(final).toMatchObject({ stop_reason: 'stop_sequence', stop_sequence: firstWord, content: [{ type: 'text', text: '' }] });
      return final;
    });
    const cited = { ...claude, messages: user([{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'The sky is blue.' }, citations: { enabled: true } }, { type: 'text', text: 'What colour?' }]) };
    await expectSameAnswer(async (c) => collect(await c.anthropic.messages.create({ ...cited, stream: true })));
  });

  it('OpenAI: json_schema through the parse() helper, json_object, logprobs plain and streamed, stop, legacy max_tokens, seed and user fields, image parts and legacy functions', async () => {
    const format = { type: 'json_schema' as const, json_schema: { name: 'answer', strict: true, schema: answerSchema } };
    await expectSameAnswer((c) => c.openai.chat.completions.parse({ ...gpt, max_completion_tokens: 200, response_format: format, messages: [{ role: 'user', content: 'how far?' }] }));
    await expectSameAnswer((c) => c.openai.chat.completions.stream({ ...gpt, max_completion_tokens: 200, response_format: format, messages: [{ role: 'user', content: 'how far?' }] }).finalChatCompletion());
    const bodies: OpenAI.Chat.ChatCompletionCreateParamsNonStreaming[] = [
      { ...gpt, response_format: { type: 'json_object' }, messages: [{ role: 'user', content: 'json, please' }] },
      { ...gpt, n: 2, logprobs: true, top_logprobs: 2, messages: [{ role: 'user', content: 'hello' }] },
      { ...gpt, max_completion_tokens: 200, stop: 'the', messages: [{ role: 'user', content: 'tell me a long story' }] },
      { model: GPT, max_tokens: 40, messages: [{ role: 'user', content: 'hello' }] },
      { ...gpt, seed: 7, user: 'user-8d1f', safety_identifier: 'user-8d1f', prompt_cache_key: 'greeting', messages: [{ role: 'developer', content: 'Answer tersely.' }, { role: 'user', content: 'hello' }] },
      { ...gpt, messages: [{ role: 'user', content: [{ type: 'text', text: 'What is in the picture?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG_1PX}`, detail: 'low' } }] }] },
      { ...gpt, functions: [{ name: 'get_weather', parameters: weatherTool.input_schema }], function_call: { name: 'get_weather' }, messages: [{ role: 'user', content: 'weather in Oslo?' }] },
    ];
    for (const body of bodies) await expectSameAnswer((c) => c.openai.chat.completions.create(body));
    const streamed = [
      { ...gpt, logprobs: true, top_logprobs: 2, messages: [{ role: 'user' as const, content: 'hello' }] },
      { ...gpt, max_completion_tokens: 200, stop: ['the'], stream_options: { include_usage: true }, messages: [{ role: 'user' as const, content: 'tell me a long story' }] },
    ];
    for (const body of streamed) await expectSameAnswer(async (c) => collect(await c.openai.chat.completions.create({ ...body, stream: true })));
  });

  it("OpenAI: the runTools() helper's exchange (the tool call, the SDK running the tool on its parsed arguments)", async () => {
    const run = (c: Clients) =>
      c.openai.chat.completions.runTools({
        ...gpt,
        // Named, the tool is called (the simulator calls tools only when made to), and the helper
        // stops once it has run it: a named tool_choice would force the same call again.
        tool_choice: { type: 'function', function: { name: 'get_weather' } },
        messages: [{ role: 'user', content: 'weather in Oslo?' }],
        tools: [{ type: 'function', function: { name: 'get_weather', description: 'Weather for a city', parameters: weatherTool.input_schema, parse: JSON.parse, function: () => '21 C, sunny' } }],
      });
    await expectSameAnswer(async (c) => {
      const runner = run(c);
      await runner.done();
      const completions = runner.allChatCompletions();
      expect(completions.map((completion) => completion.choices[0]?.finish_reason)).toEqual(['tool_calls']);
      // The helper parsed the call's arguments and ran the tool: its result is the next turn.
      const toolTurn = runner.messages.find((message) => message.role === 'tool');
      expect(toolTurn).toMatchObject({ role: 'tool', content: '21 C, sunny' });
      return { completions, messages: runner.messages };
    });
  });
});
