/**
 * The gateway with the official SDKs, unchanged but for `baseURL` and a gateway key: the same
 * answers (content and usage) as the simulator gives them directly, plain and streamed through
 * their own stream helpers, and the SSE events as curl shows them.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { ChatCompletionStream } from 'openai/lib/ChatCompletionStream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '@headroom/producer-sdk';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { GATEWAY_KEYS, GPT, GPT_MINI, HAIKU, PROVIDER_KEY, SIM_MODELS, SONNET, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';
import { until } from '../support/probes.js';

let redis: EmbeddedRedis;
let sim: Simulator;
let fleet: GatewayFleet;
let direct: { anthropic: Anthropic; openai: OpenAI };

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  sim = await startSimulator({ latencyMs: 2, models: SIM_MODELS });
  fleet = await startGatewayFleet(redis.url, sim);
  direct = {
    anthropic: new Anthropic({ apiKey: PROVIDER_KEY, baseURL: sim.url, maxRetries: 0 }),
    openai: new OpenAI({ apiKey: PROVIDER_KEY, baseURL: `${sim.url}/v1`, maxRetries: 0 }),
  };
});
afterAll(async () => {
  await fleet?.close();
  await sim?.close();
  await redis?.stop();
});

/** The simulator's request ids, shaped as each provider's: the gateway has none of its own to send. */
const ANTHROPIC_REQUEST_ID = /^req_011[0-9A-Za-z]{21}$/;
const OPENAI_REQUEST_ID = /^req_[0-9A-Za-z]{32}$/;
const claude = (content: string) => ({ model: SONNET, max_tokens: 120, messages: [{ role: 'user' as const, content }] });
const chat = (content: string) => ({ model: GPT, max_completion_tokens: 120, messages: [{ role: 'user' as const, content }] });

/**
 * A streamed job once its worker has finished it: the client's stream ends on the relay's end
 * entry, which the worker writes just before it completes the job, so the result may be a moment
 * behind the stream's last event.
 */
async function finishedJob(jobId: string) {
  const producer = new Producer({ redis: redis.url, prefix: fleet.prefix });
  try {
    const seen: { job?: Awaited<ReturnType<Producer['getJob']>> } = {};
    await until(async () => {
      seen.job = await producer.getJob(jobId);
      return seen.job?.state === 'completed' || seen.job?.state === 'failed';
    }, 10_000, `job ${jobId} finished`);
    // Said here, with its failure, rather than as a missing result further on.
    expect(seen.job?.state, JSON.stringify(seen.job?.failure)).toBe('completed');
    return seen.job;
  } finally {
    await producer.close();
  }
}

describe('the gateway with the official SDKs', () => {
  it('Anthropic: messages.create gets the answer the provider gives directly, and says how it was served', async () => {
    const body = claude('What is a priority queue?');
    const viaGateway = await fleet.anthropic().messages.create(body).withResponse();
    const directly = await direct.anthropic.messages.create(body);
    expect(viaGateway.data.content).toEqual(directly.content);
    expect(viaGateway.data.usage).toEqual(directly.usage);
    expect(viaGateway.data.model).toBe(SONNET);
    const h = viaGateway.response.headers;
    expect(h.get('headroom-job-id')).toMatch(/^normal\./);
    expect(h.get('headroom-lane')).toBe('normal');
    expect(h.get('headroom-model')).toBe(SONNET);
    expect(Number(h.get('headroom-wait-ms'))).toBeGreaterThanOrEqual(0);
    // The provider's id for the call (its request-id header, which the SDK reads), not one of ours.
    expect(viaGateway.request_id).toMatch(ANTHROPIC_REQUEST_ID);
    expect((viaGateway.data as { _request_id?: string })._request_id).toBe(viaGateway.request_id);
  });

  it('OpenAI: chat.completions.create gets the answer the provider gives directly', async () => {
    const body = chat('What is a lane?');
    const viaGateway = await fleet.openai().chat.completions.create(body);
    const directly = await direct.openai.chat.completions.create(body);
    expect(viaGateway.choices).toEqual(directly.choices);
    expect(viaGateway.usage).toEqual(directly.usage);
    expect(viaGateway._request_id).toMatch(OPENAI_REQUEST_ID);
  });

  it("takes back the provider's own blocks on the next turn (a server tool's use and result, a search result) and OpenAI's custom tool calls, as the provider does", async () => {
    const turn = {
      model: SONNET,
      max_tokens: 60,
      messages: [
        { role: 'user' as const, content: [{ type: 'search_result' as const, source: 'https://example.com', title: 'A page', content: [{ type: 'text' as const, text: 'found' }] }] },
        {
          role: 'assistant' as const,
          content: [
            { type: 'server_tool_use' as const, id: 'srvtoolu_01', name: 'web_search' as const, input: { query: 'queues' } },
            { type: 'web_search_tool_result' as const, tool_use_id: 'srvtoolu_01', content: [{ type: 'web_search_result' as const, url: 'https://example.com', title: 't', encrypted_content: 'e' }] },
            { type: 'text' as const, text: 'Queues hold work.' },
          ],
        },
        { role: 'user' as const, content: 'And then?' },
      ],
    };
    const viaGateway = await fleet.anthropic().messages.create(turn);
    expect(viaGateway.content).toEqual((await direct.anthropic.messages.create(turn)).content);
    const custom = {
      model: GPT,
      max_completion_tokens: 60,
      messages: [
        { role: 'user' as const, content: 'Find foo.' },
        { role: 'assistant' as const, tool_calls: [{ id: 'call_1', type: 'custom' as const, custom: { name: 'grep', input: 'foo' } }] },
        { role: 'tool' as const, tool_call_id: 'call_1', content: 'bar' },
      ],
    };
    expect((await fleet.openai().chat.completions.create(custom)).choices).toEqual((await direct.openai.chat.completions.create(custom)).choices);
  });

  it("streams carry the provider's request id too, from their first byte", async () => {
    const anthropicStream = await fleet.anthropic().messages.create({ ...claude('Hello.'), stream: true }).withResponse();
    for await (const _event of anthropicStream.data);
    expect(anthropicStream.request_id).toMatch(ANTHROPIC_REQUEST_ID);
    const openaiStream = await fleet.openai().chat.completions.create({ ...chat('Hello.'), stream: true }).withResponse();
    for await (const _chunk of openaiStream.data);
    expect(openaiStream.request_id).toMatch(OPENAI_REQUEST_ID);
    // Each call is its own: two calls, two ids.
    const again = await fleet.anthropic().messages.create(claude('Hello.')).withResponse();
    expect(again.request_id).not.toBe(anthropicStream.request_id);
  });

  it('Anthropic: messages.stream() yields the same text and final usage as streaming directly', async () => {
    const body = claude('Tell me a short story about a lighthouse.');
    const viaGateway = fleet.anthropic().messages.stream(body);
    const texts: string[] = [];
    viaGateway.on('text', (t) => texts.push(t));
    const gatewayFinal = await viaGateway.finalMessage();
    const directFinal = await direct.anthropic.messages.stream(body).finalMessage();
    expect(texts.length).toBeGreaterThan(1);
    expect(texts.join('')).toBe((directFinal.content[0] as { text: string }).text);
    expect(gatewayFinal.content).toEqual(directFinal.content);
    expect(gatewayFinal.usage).toEqual(directFinal.usage);
    expect(gatewayFinal.stop_reason).toBe(directFinal.stop_reason);
  });

  it("a stream the provider overloads in the stream before its first token is retried behind the client's back: the stream helpers get one whole answer", async () => {
    const body = claude('Overloaded at first?');
    const directly = await direct.anthropic.messages.stream(body).finalMessage();
    const admitted = (model: string) => sim.stats().models[model]?.admitted ?? 0;
    const before = admitted(SONNET);
    sim.injectFaults({ model: SONNET, overloaded: true, midCall: true, count: 1 });
    // No fallback: the answer is the same model's, comparable with the direct one.
    const final = await fleet.anthropic().messages.stream(body, { headers: { 'headroom-fallback': 'none' } }).finalMessage();
    expect(final.content).toEqual(directly.content);
    expect(final.usage).toEqual(directly.usage);
    expect(admitted(SONNET)).toBe(before + 2);

    const question = chat('Overloaded at first, OpenAI?');
    let directText = '';
    for await (const chunk of await direct.openai.chat.completions.create({ ...question, stream: true })) directText += chunk.choices[0]?.delta.content ?? '';
    sim.injectFaults({ model: GPT, overloaded: true, midCall: true, count: 1 });
    let text = '';
    const roles: string[] = [];
    for await (const chunk of await fleet.openai().chat.completions.create({ ...question, stream: true }, { headers: { 'headroom-fallback': 'none' } })) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.choices[0]?.delta.role) roles.push(chunk.choices[0].delta.role);
    }
    expect(text).toBe(directText);
    expect(roles).toEqual(['assistant']);
  });

  it("Anthropic: extended thinking, plain and through messages.stream(), as the provider gives it directly; its signed block goes back on the next turn", async () => {
    const body = { model: SONNET, max_tokens: 1_200, thinking: { type: 'enabled' as const, budget_tokens: 1_024 }, messages: [{ role: 'user' as const, content: 'Think, then answer.' }] };
    const directly = await direct.anthropic.messages.create(body);
    expect(directly.content.map((b) => b.type)).toEqual(['thinking', 'text']);
    const plain = await fleet.anthropic().messages.create(body);
    expect(plain.content).toEqual(directly.content);
    expect(plain.usage).toEqual(directly.usage);
    const stream = fleet.anthropic().messages.stream(body);
    const thoughts: string[] = [];
    stream.on('thinking', (delta) => thoughts.push(delta));
    const final = await stream.finalMessage();
    expect(thoughts.length).toBeGreaterThan(1);
    expect(thoughts.join('')).toBe((directly.content[0] as Anthropic.ThinkingBlock).thinking);
    expect(final.content).toEqual(directly.content);
    expect(final.usage).toEqual(directly.usage);
    // The job's result, put together by the worker from the events, keeps the block and its signature.
    const { response } = await stream.withResponse();
    const job = await finishedJob(response.headers.get('headroom-job-id')!);
    expect(job?.result?.response).toMatchObject({ content: [{ type: 'thinking', signature: (directly.content[0] as Anthropic.ThinkingBlock).signature }, { type: 'text' }] });
    // The provider checks a thinking block passed back against its signature: through the gateway it is the one it sent.
    const next = await fleet.anthropic().messages.create({
      ...body,
      messages: [...body.messages, { role: 'assistant', content: final.content }, { role: 'user', content: 'Go on.' }],
    });
    expect(next.content[0]?.type).toBe('thinking');
  });

  it('OpenAI: create({ stream: true }) yields the same text and final usage chunk as streaming directly', async () => {
    const body = { ...chat('Tell me a short story about a harbour.'), stream: true as const, stream_options: { include_usage: true } };
    const collect = async (client: OpenAI) => {
      let text = '';
      let usage: unknown;
      let chunks = 0;
      for await (const chunk of await client.chat.completions.create(body)) {
        chunks += 1;
        text += chunk.choices[0]?.delta.content ?? '';
        if (chunk.usage) usage = chunk.usage;
      }
      return { text, usage, chunks };
    };
    const viaGateway = await collect(fleet.openai());
    const directly = await collect(direct.openai);
    expect(viaGateway.text).toBe(directly.text);
    expect(viaGateway.usage).toEqual(directly.usage);
    expect(viaGateway.chunks).toBe(directly.chunks);
  });

  it("Anthropic: the client's betas (anthropic-beta) reach the provider, plain and streamed", async () => {
    const betas = ['context-1m-2025-08-07', 'interleaved-thinking-2025-05-14'];
    const before = sim.stats().admissions.length;
    const plain = await fleet.anthropic().beta.messages.create({ ...claude('beta plain'), betas });
    expect(plain.content.length).toBeGreaterThan(0);
    await fleet.anthropic().beta.messages.stream({ ...claude('beta stream'), betas }).finalMessage();
    // A call without betas sends none.
    await fleet.anthropic().messages.create(claude('no beta'));
    expect(sim.stats().admissions.slice(before).map((a) => [a.betas, a.streamed])).toEqual([
      [betas, false],
      [betas, true],
      [undefined, false],
    ]);
  });

  it('OpenAI: n choices, plain and streamed, come back as the provider gives them directly', async () => {
    const body = { ...chat('Name a colour.'), n: 3 };
    const viaGateway = await fleet.openai().chat.completions.create(body);
    const directly = await direct.openai.chat.completions.create(body);
    expect(viaGateway.choices).toHaveLength(3);
    expect(viaGateway.choices).toEqual(directly.choices);
    expect(viaGateway.usage).toEqual(directly.usage);
    // Streamed, the choices' chunks interleave; the SDK's helper puts each together by its index.
    const streamed = await fleet.openai().chat.completions.stream({ ...body, stream_options: { include_usage: true } }).finalChatCompletion();
    expect(streamed.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual(directly.choices.map((c) => [c.index, c.message.content, c.finish_reason]));
    expect(streamed.usage).toEqual(directly.usage);
  });

  it('OpenAI: a Chat call without a model, or with n above 128, is refused as the provider refuses it: the same class, status, type, param and code', async () => {
    const refusal = async (client: OpenAI, body: Record<string, unknown>) => {
      const err = await client.chat.completions.create(body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      const { status, type, param, code, message } = err as InstanceType<typeof OpenAI.BadRequestError>;
      return { status, type, param, code, message };
    };
    const { model: _, ...noModel } = chat('Which model?');
    for (const body of [noModel, { ...noModel, model: 5 }, { ...noModel, model: '' }]) {
      const viaGateway = await refusal(fleet.openai(), body);
      // OpenAI's own words, with no param and no code: `400 you must provide a model parameter`.
      expect(viaGateway).toEqual(await refusal(direct.openai, body));
      expect(viaGateway).toMatchObject({ status: 400, param: null, code: null, message: '400 you must provide a model parameter' });
    }
    const many = { ...chat('Name a colour.'), n: 129 };
    const { message, ...viaGateway } = await refusal(fleet.openai(), many);
    const { message: providerMessage, ...directly } = await refusal(direct.openai, many);
    expect(viaGateway).toEqual(directly);
    expect(viaGateway).toMatchObject({ status: 400, param: 'n', code: 'integer_above_max_value' });
    expect(providerMessage).toContain('Expected a value <= 128, but got 129');
    expect(message).toBe('400 n: expected at most 128, got 129');
  });

  it("OpenAI: a call that sets no max_completion_tokens (the SDK's default) is served like the provider serves it, plain and streamed", async () => {
    const body = { model: GPT, messages: [{ role: 'user' as const, content: 'What is a token bucket?' }] };
    const viaGateway = await fleet.openai().chat.completions.create(body);
    const directly = await direct.openai.chat.completions.create(body);
    expect(viaGateway.choices).toEqual(directly.choices);
    expect(viaGateway.usage).toEqual(directly.usage);
    const streamed = await fleet.openai().chat.completions.stream({ ...body, stream_options: { include_usage: true } }).finalChatCompletion();
    expect(streamed.choices[0]?.message.content).toBe(directly.choices[0]?.message.content);
    expect(streamed.usage).toEqual(directly.usage);
    // A model with no maxOutputTokens in the fleet's config cannot budget such a call: refused
    // at enqueue, naming the field and the setting, and nothing reaches the provider.
    const admitted = sim.stats().models[GPT_MINI]?.admitted ?? 0;
    const refused = await fleet.openai().chat.completions.create({ ...body, model: GPT_MINI }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect((refused as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('max_completion_tokens');
    expect((refused as Error).message).toContain(`model "${GPT_MINI}" has no maxOutputTokens`);
    expect(sim.stats().models[GPT_MINI]?.admitted ?? 0).toBe(admitted);
  });

  it("OpenAI: the SDK's typed nulls (temperature, n, max_completion_tokens, stream: null) are served as the provider serves them, plain and streamed", async () => {
    const body = { model: GPT, messages: [{ role: 'user' as const, content: 'typed nulls' }], temperature: null, n: null, max_completion_tokens: null, max_tokens: null };
    // stream: null is a plain call, as it is to the provider.
    const viaGateway = await fleet.openai().chat.completions.create({ ...body, stream: null });
    const directly = await direct.openai.chat.completions.create({ ...body, stream: null });
    expect(viaGateway.choices).toEqual(directly.choices);
    expect(viaGateway.usage).toEqual(directly.usage);
    const streamed = await fleet.openai().chat.completions.stream({ ...body, stream_options: { include_usage: true } }).finalChatCompletion();
    expect(streamed.choices[0]?.message.content).toBe(directly.choices[0]?.message.content);
    expect(streamed.usage).toEqual(directly.usage);
    // An assistant turn sent back with tool_calls: null, and a Responses call with stream: null.
    const turn = await fleet.openai().chat.completions.create({ ...body, messages: [...body.messages, { role: 'assistant', content: 'ok', tool_calls: null } as never, { role: 'user', content: 'again' }] });
    expect(turn.choices).toHaveLength(1);
    const reply = await fleet.openai().responses.create({ model: GPT, input: 'typed nulls', stream: null, max_output_tokens: null });
    expect(reply.status).toBe('completed');
    // A null bound is no bound: the call reserves its model's maxOutputTokens, so a model without
    // one in the fleet's config is refused naming it (a null read as a bound reserved 0 tokens).
    const refused = await fleet.openai().chat.completions.create({ ...body, model: GPT_MINI }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError);
    expect((refused as Error).message).toContain(`model "${GPT_MINI}" has no maxOutputTokens`);
  });

  it('Anthropic: an empty final assistant message (a prefill) is served as the provider serves it', async () => {
    const prefill = { ...claude('Say something.'), messages: [{ role: 'user' as const, content: 'Say something.' }, { role: 'assistant' as const, content: '' }] };
    const directPrefill = await direct.anthropic.messages.create(prefill);
    expect((await fleet.anthropic().messages.create(prefill)).content).toEqual(directPrefill.content);
  });

  it('Anthropic: a tool call and its result, plain and through messages.stream(), as the provider gives them directly', async () => {
    const tools = [{ name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object' as const, properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } }];
    const body = { ...claude('Weather in Lisbon?'), tools, tool_choice: { type: 'tool' as const, name: 'get_weather' } };
    const inputOf = (m: Anthropic.Message) => (m.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock | undefined)?.input;
    const directly = await direct.anthropic.messages.create(body);
    expect(directly.stop_reason).toBe('tool_use');
    const viaGateway = await fleet.anthropic().messages.create(body);
    expect(viaGateway.stop_reason).toBe('tool_use');
    expect(inputOf(viaGateway)).toEqual(inputOf(directly));
    expect(viaGateway.usage).toEqual(directly.usage);
    // Streamed: the input arrives as input_json_delta events, which the helper puts together.
    const stream = fleet.anthropic().messages.stream(body);
    const partials: string[] = [];
    stream.on('inputJson', (partial) => partials.push(partial));
    const final = await stream.finalMessage();
    expect(inputOf(final)).toEqual(inputOf(directly));
    expect(partials.length).toBe(directly.usage.output_tokens);
    expect(final.usage).toEqual(directly.usage);
    // The job's result, put together by the worker from the events, holds the same call.
    const { response } = await stream.withResponse();
    const job = await finishedJob(response.headers.get('headroom-job-id')!);
    expect(job?.result?.response).toMatchObject({ stop_reason: 'tool_use', content: [{ type: 'tool_use', name: 'get_weather', input: inputOf(directly) }] });
    // The agent's next turn: the tool's result goes back, and the answer is text.
    const use = final.content[0] as Anthropic.ToolUseBlock;
    const next = await fleet.anthropic().messages.create({
      ...claude('Weather in Lisbon?'),
      tools,
      messages: [
        { role: 'user', content: 'Weather in Lisbon?' },
        { role: 'assistant', content: final.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21 C, sunny' }] },
      ],
    });
    expect(next.content[0]?.type).toBe('text');
  });

  it('OpenAI: a tool call and its result, plain, streamed and through chat.completions.stream(), as the provider gives them directly', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] } } }];
    const body = { ...chat('Weather in Lisbon?'), tools, tool_choice: 'required' as const };
    const functionOf = (m: OpenAI.Chat.ChatCompletionMessage) => (m.tool_calls?.[0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall | undefined)?.function;
    const directly = await direct.openai.chat.completions.create(body);
    expect(directly.choices[0]?.finish_reason).toBe('tool_calls');
    const viaGateway = await fleet.openai().chat.completions.create(body);
    expect(viaGateway.choices[0]?.finish_reason).toBe('tool_calls');
    expect(functionOf(viaGateway.choices[0]!.message)).toEqual(functionOf(directly.choices[0]!.message));
    expect(viaGateway.usage).toEqual(directly.usage);
    // Streamed: the arguments arrive in pieces, by the call's index.
    let args = '';
    const streamed = await fleet.openai().chat.completions.create({ ...body, stream: true }).withResponse();
    for await (const chunk of streamed.data) args += chunk.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '';
    expect(args).toBe(functionOf(directly.choices[0]!.message)?.arguments);
    // The job's result, put together by the worker from the chunks, holds the same call.
    const job = await finishedJob(streamed.response.headers.get('headroom-job-id')!);
    expect(job?.result?.response).toMatchObject({ choices: [{ finish_reason: 'tool_calls', message: { tool_calls: [{ type: 'function', function: functionOf(directly.choices[0]!.message) }] } }] });
    const final = await fleet.openai().chat.completions.stream({ ...body, stream_options: { include_usage: true } }).finalChatCompletion();
    expect(final.choices[0]?.finish_reason).toBe('tool_calls');
    expect(functionOf(final.choices[0]!.message)).toEqual(functionOf(directly.choices[0]!.message));
    expect(final.usage).toEqual(directly.usage);
    // The next turn: the tool's result goes back, and the answer is text.
    const call = final.choices[0]!.message.tool_calls![0]!;
    const next = await fleet.openai().chat.completions.create({
      ...chat('Weather in Lisbon?'),
      tools,
      messages: [
        { role: 'user', content: 'Weather in Lisbon?' },
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '21 C, sunny' },
      ],
    });
    expect(typeof next.choices[0]?.message.content).toBe('string');
  });

  it('parallel tool calls, streamed through both SDKs, as the provider gives them directly; the job result holds them all', async () => {
    const schema = { type: 'object' as const, properties: { city: { type: 'string' } } };
    const names = ['get_weather', 'get_time'];
    const producer = new Producer({ redis: redis.url, prefix: fleet.prefix });
    try {
      // Anthropic: two tool_use blocks, each streamed as its own block.
      const claudeBody = { ...claude('Weather and time in Rome?'), tools: names.map((name) => ({ name, input_schema: schema })), tool_choice: { type: 'any' as const } };
      const uses = (m: Anthropic.Message) => m.content.map((b) => [(b as Anthropic.ToolUseBlock).name, (b as Anthropic.ToolUseBlock).input]);
      const directly = await direct.anthropic.messages.create(claudeBody);
      expect(uses(directly).map(([name]) => name)).toEqual(names);
      const stream = fleet.anthropic().messages.stream(claudeBody);
      const final = await stream.finalMessage();
      expect(uses(final)).toEqual(uses(directly));
      const job = await finishedJob((await stream.withResponse()).response.headers.get('headroom-job-id')!);
      expect(uses(job!.result!.response as Anthropic.Message)).toEqual(uses(directly));
      // OpenAI: two tool_calls, the second opened by a chunk of its own index.
      const gptBody = { ...chat('Weather and time in Rome?'), tools: names.map((name) => ({ type: 'function' as const, function: { name, parameters: schema } })), tool_choice: 'required' as const };
      const fns = (m: OpenAI.Chat.ChatCompletionMessage) => m.tool_calls?.map((c) => (c as OpenAI.Chat.ChatCompletionMessageFunctionToolCall).function);
      const plain = await direct.openai.chat.completions.create(gptBody);
      expect(fns(plain.choices[0]!.message)?.map((f) => f.name)).toEqual(names);
      const streamed = await fleet.openai().chat.completions.create({ ...gptBody, stream: true, stream_options: { include_usage: true } }).withResponse();
      for await (const _chunk of streamed.data);
      const viaHelper = await fleet.openai().chat.completions.stream(gptBody).finalChatCompletion();
      expect(fns(viaHelper.choices[0]!.message)).toEqual(fns(plain.choices[0]!.message));
      const gptJob = await finishedJob(streamed.response.headers.get('headroom-job-id')!);
      expect(fns((gptJob!.result!.response as OpenAI.Chat.ChatCompletion).choices[0]!.message)).toEqual(fns(plain.choices[0]!.message));
    } finally {
      await producer.close();
    }
  });

  it("OpenAI: a spoken answer (audio output) streamed holds the audio the plain call gives directly: the stream helper's, the job result's, a producer.stream()'s and a repeat's", async () => {
    const body = { ...chat('Say hello in a few words.'), modalities: ['text' as const, 'audio' as const], audio: { voice: 'alloy' as const, format: 'pcm16' as const } };
    // The id and expiry are each call's own; the sound and its transcript are the answer's.
    const sound = (c: OpenAI.Chat.ChatCompletion.Choice | undefined) => {
      const m = c?.message;
      return { content: m?.content, data: m?.audio?.data, transcript: m?.audio?.transcript, whole: m?.audio?.id !== undefined && m.audio.expires_at !== undefined, finish: c?.finish_reason };
    };
    const plain = await direct.openai.chat.completions.create(body);
    const spoken = sound(plain.choices[0]);
    expect(spoken).toMatchObject({ content: null, whole: true });
    expect(spoken.transcript).not.toBe('');

    const headers = { 'headroom-idempotency-key': 'gateway-spoken-1' };
    const streamed = await fleet.openai().chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } }, { headers }).withResponse();
    const final = await ChatCompletionStream.fromReadableStream(streamed.data.toReadableStream()).finalChatCompletion();
    expect(sound(final.choices[0])).toEqual(spoken);
    const job = await finishedJob(streamed.response.headers.get('headroom-job-id')!);
    expect(sound((job!.result!.response as OpenAI.Chat.ChatCompletion).choices[0])).toEqual(spoken);
    // A repeat of the key is streamed the job's answer again, not run again.
    const again = await fleet.openai().chat.completions.stream({ ...body, stream_options: { include_usage: true } }, { headers }).finalChatCompletion();
    expect(sound(again.choices[0])).toEqual(spoken);

    const producer = new Producer({ redis: redis.url, prefix: fleet.prefix });
    try {
      const viaProducer = await producer.stream({ priority: 'HIGH', provider: 'openai', request: { ...body, stream: true, stream_options: { include_usage: true } } });
      for await (const _event of viaProducer);
      const result = await viaProducer.result();
      expect(sound((result.response as OpenAI.Chat.ChatCompletion).choices[0])).toEqual(spoken);
    } finally {
      await producer.close();
    }
  });

  it('OpenAI: a stream without include_usage carries no usage, as the provider sends it', async () => {
    const body = { ...chat('Count to five.'), stream: true as const };
    let sawUsage = false;
    let text = '';
    for await (const chunk of await fleet.openai().chat.completions.create(body)) {
      if ('usage' in chunk) sawUsage = true;
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(sawUsage).toBe(false);
    expect(text.length).toBeGreaterThan(0);
  });

  it('counts what it answered on its metrics port, by route, status and client key', async () => {
    const scrape = async (): Promise<Map<string, number>> => {
      const text = await (await fetch(`http://127.0.0.1:${fleet.gateway.metricsPort}/metrics`)).text();
      const values = new Map<string, number>();
      for (const line of text.split('\n')) {
        const m = /^(headroom_gateway_\w+(?:\{[^}]*\})?) (\S+)$/.exec(line);
        if (m) values.set(m[1]!, Number(m[2]));
      }
      return values;
    };
    const before = await scrape();
    const delta = async (series: string) => ((await scrape()).get(series) ?? 0) - (before.get(series) ?? 0);
    await fleet.anthropic().messages.create(claude('Count me.'));
    const stream = fleet.anthropic().messages.stream(claude('Count me as a stream.'));
    await stream.finalMessage();
    const refused = await fleet.anthropic('hr-not-a-key-0123456789abcdef').messages.create(claude('Who am I?')).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(await delta('headroom_gateway_requests_total{route="messages",status="200",key="app"}')).toBe(2);
    expect(await delta('headroom_gateway_requests_total{route="messages",status="401",key=""}')).toBe(1);
    expect(await delta('headroom_gateway_request_duration_seconds_count{route="messages",stream="true"}')).toBe(1);
    expect(await delta('headroom_gateway_request_duration_seconds_count{route="messages",stream="false"}')).toBe(2);
    expect(await delta('headroom_gateway_stream_first_byte_seconds_count{route="messages"}')).toBe(1);
    expect((await scrape()).get('headroom_gateway_requests_in_flight')).toBe(0);
    // The probes answer there too, without a key.
    expect(await (await fetch(`http://127.0.0.1:${fleet.gateway.metricsPort}/readyz`)).json()).toMatchObject({ ok: true });
  });

  it('takes a body sent compressed (content-encoding gzip or br), as clients with request compression send it', async () => {
    const body = chat('What is request compression?');
    const directly = await direct.openai.chat.completions.create(body);
    for (const [encoding, compress] of [['gzip', gzipSync], ['br', brotliCompressSync]] as const) {
      const res = await fetch(`${fleet.gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': encoding, authorization: `Bearer ${GATEWAY_KEYS.app}` },
        body: compress(Buffer.from(JSON.stringify(body))),
      });
      expect(res.status, encoding).toBe(200);
      expect(((await res.json()) as { choices: unknown }).choices).toEqual(directly.choices);
    }
  });

  it('curl -N shows the SSE events as they come', async () => {
    const out = await new Promise<string>((resolve, reject) => {
      const curl = spawn('curl', [
        '-sN',
        `${fleet.gateway.url}/v1/messages`,
        '-H', 'content-type: application/json',
        '-H', 'anthropic-version: 2023-06-01',
        '-H', `x-api-key: ${GATEWAY_KEYS.app}`,
        '-H', 'headroom-priority: high',
        '-d', JSON.stringify({ ...claude('Say hello.'), stream: true }),
      ]);
      let text = '';
      curl.stdout.on('data', (d: Buffer) => { text += d.toString(); });
      curl.on('error', reject);
      curl.on('close', () => resolve(text));
    });
    const events = [...out.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    expect(events[0]).toBe('message_start');
    expect(events).toContain('content_block_delta');
    expect(events.at(-1)).toBe('message_stop');
    expect(out).toMatch(/^data: \{"type":"message_start"/m);
  });

  it("fills a stream's silences with keep-alives the SDKs read past: Anthropic's ping event, an SSE comment for OpenAI", async () => {
    // A token every 400 ms against a keep-alive after 100 ms of silence: every gap gets one.
    const pinging = await fleet.gatewayWith({ streamPingMs: 100 });
    const before = sim.pace();
    sim.setPace({ streamTokenMs: 400 });
    try {
      const raw = async (path: string, headers: Record<string, string>, body: object) => {
        const res = await fetch(`${pinging.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ ...body, stream: true }) });
        expect(res.status).toBe(200);
        return res.text();
      };
      const claudeText = await raw('/v1/messages', { 'x-api-key': GATEWAY_KEYS.app, 'anthropic-version': '2023-06-01' }, { ...claude('Keep me company.'), max_tokens: 4 });
      // All the gateway's: the provider's own pings stop at the worker's SDK, which skips them.
      expect(claudeText).toMatch(/^event: ping\ndata: \{"type": "ping"\}$/m);
      expect(claudeText).toMatch(/^event: message_stop$/m);
      const chatText = await raw('/v1/chat/completions', { authorization: `Bearer ${GATEWAY_KEYS.app}` }, { ...chat('Keep me company.'), max_completion_tokens: 4 });
      expect(chatText).toMatch(/^: ping$/m);
      expect(chatText.trimEnd().endsWith('data: [DONE]')).toBe(true);

      // The SDKs' stream helpers read past them: whole messages, the same text as their deltas.
      const anthropic = new Anthropic({ apiKey: GATEWAY_KEYS.app, baseURL: pinging.url, maxRetries: 0 });
      const stream = anthropic.messages.stream({ ...claude('Keep me company.'), max_tokens: 4 });
      let deltas = '';
      stream.on('text', (t) => { deltas += t; });
      const message = await stream.finalMessage();
      expect(message.content).toEqual([{ type: 'text', text: deltas, citations: null }]);
      expect(message.usage.output_tokens).toBeGreaterThan(0);
      const openai = new OpenAI({ apiKey: GATEWAY_KEYS.app, baseURL: `${pinging.url}/v1`, maxRetries: 0 });
      const chunks = await openai.chat.completions.create({ ...chat('Keep me company.'), max_completion_tokens: 4, stream: true, stream_options: { include_usage: true } });
      let text = '';
      let usage: OpenAI.CompletionUsage | null | undefined;
      for await (const c of chunks) {
        text += c.choices[0]?.delta.content ?? '';
        usage = c.usage ?? usage;
      }
      expect(text.length).toBeGreaterThan(0);
      expect(usage?.completion_tokens).toBeGreaterThan(0);
    } finally {
      sim.setPace(before);
    }
  });

  it('lists the models it serves in each format, and counts tokens without a provider key', async () => {
    const claudeModels = (await fleet.anthropic().models.list()).data.map((m) => m.id);
    const gptModels = (await fleet.openai().models.list()).data.map((m) => m.id);
    expect(claudeModels.sort()).toEqual(['claude-haiku-4-5', 'claude-sonnet-4-6']);
    expect(gptModels.sort()).toEqual(['gpt-4.1', 'gpt-4.1-mini']);
    const counted = await fleet.anthropic().messages.countTokens({ model: SONNET, messages: [{ role: 'user', content: 'How many tokens is this?' }] });
    expect(counted.input_tokens).toBeGreaterThan(5);
  });

  it("gives the models and count_tokens answers it makes itself a request id, as the provider gives every answer: the SDKs' _request_id is never null", async () => {
    const OWN_ID = /^req_headroom_[0-9a-f]{32}$/;
    const anthropicGateway = fleet.anthropic();
    const openaiGateway = fleet.openai();
    const answers = [
      await anthropicGateway.models.list().withResponse(),
      await anthropicGateway.models.retrieve(SONNET).withResponse(),
      await anthropicGateway.messages.countTokens({ model: SONNET, messages: [{ role: 'user', content: 'hi' }] }).withResponse(),
      await openaiGateway.models.list().withResponse(),
      await openaiGateway.models.retrieve(GPT).withResponse(),
    ];
    // Each SDK reads its own provider's header (Anthropic request-id, OpenAI x-request-id).
    for (const answer of answers) expect(answer.request_id).toMatch(OWN_ID);
    expect(new Set(answers.map((a) => a.request_id)).size).toBe(answers.length);
    // The provider (here the simulator) sends one on the same calls.
    expect((await direct.anthropic.messages.countTokens({ model: SONNET, messages: [{ role: 'user', content: 'hi' }] }).withResponse()).request_id).toMatch(ANTHROPIC_REQUEST_ID);
    expect((await direct.openai.models.retrieve(GPT).withResponse()).request_id).toMatch(OPENAI_REQUEST_ID);
  });

  it("describes each model in the fields the SDKs declare, with a release date that does not change with the gateway's start", async () => {
    const claudeModels = (await fleet.anthropic().models.list()).data;
    // Every field of SDK 1.13's ModelInfo present: a client's filter on lifecycle finds the models.
    expect(claudeModels.filter((m) => m.lifecycle === 'active').map((m) => m.id).sort()).toEqual(['claude-haiku-4-5', 'claude-sonnet-4-6']);
    // max_tokens is the config's maxOutputTokens (HAIKU has one), else null.
    const sonnet = { type: 'model', id: SONNET, display_name: SONNET, created_at: '1970-01-01T00:00:00Z', capabilities: null, deprecated_at: null, lifecycle: 'active', line: null, max_input_tokens: null, max_tokens: null, retires_at: null };
    expect(claudeModels.find((m) => m.id === SONNET)).toEqual(sonnet);
    expect(claudeModels.find((m) => m.id === HAIKU)).toEqual({ ...sonnet, id: HAIKU, display_name: HAIKU, max_tokens: 64_000 });
    expect(await fleet.anthropic().models.retrieve(SONNET)).toMatchObject(sonnet);
    // OpenAI's object as the provider (here the simulator) describes its current models.
    const gpt = await direct.openai.models.retrieve(GPT);
    expect(gpt).toMatchObject({ id: GPT, object: 'model', created: 0, owned_by: 'system' });
    expect((await fleet.openai().models.list()).data.find((m) => m.id === GPT)).toEqual(gpt);
    expect(await fleet.openai().models.retrieve(GPT)).toEqual(gpt);
  });

  it('serves each route with one trailing slash: /v1/messages/, /v1/chat/completions/, and /v1/models/ is the list', async () => {
    const anthropicHeaders = { 'x-api-key': GATEWAY_KEYS.app, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };
    const openaiHeaders = { authorization: `Bearer ${GATEWAY_KEYS.app}`, 'content-type': 'application/json' };
    const message = await fetch(`${fleet.gateway.url}/v1/messages/`, { method: 'POST', headers: anthropicHeaders, body: JSON.stringify(claude('Hello with a slash.')) });
    expect(message.status).toBe(200);
    expect(await message.json()).toMatchObject({ type: 'message', model: SONNET });
    const completion = await fetch(`${fleet.gateway.url}/v1/chat/completions/`, { method: 'POST', headers: openaiHeaders, body: JSON.stringify(chat('Hello with a slash.')) });
    expect(completion.status).toBe(200);
    expect(await completion.json()).toMatchObject({ object: 'chat.completion', model: GPT });
    const list = await fetch(`${fleet.gateway.url}/v1/models/`, { headers: openaiHeaders });
    expect(list.status).toBe(200);
    expect(((await list.json()) as { data: { id: string }[] }).data.map((m) => m.id).sort()).toEqual([GPT, GPT_MINI]);
    const one = await fetch(`${fleet.gateway.url}/v1/models/${GPT}/`, { headers: openaiHeaders });
    expect(await one.json()).toMatchObject({ id: GPT, object: 'model' });
  });

  it('answers Expect: 100-continue with a refusal the head decides (a wrong key, an oversized content-length) before the body is sent, and with 100 Continue otherwise', async () => {
    /** A POST that sends its body only when told to continue, as curl and the HTTP clients that use Expect do. */
    const post = (headers: Record<string, string>, body: string, declaredLength = Buffer.byteLength(body)) =>
      new Promise<{ status: number; continued: boolean; body: string; connection: string | undefined }>((resolve, reject) => {
        let continued = false;
        const req = request(`${fleet.gateway.url}/v1/messages`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', 'anthropic-version': '2023-06-01', expect: '100-continue', 'content-length': String(declaredLength) } });
        req.on('continue', () => {
          continued = true;
          req.end(body);
        });
        req.on('response', (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, continued, body: text, connection: res.headers.connection });
            // A refused request's body was never sent: nothing more to say on this connection.
            req.destroy();
          });
        });
        req.on('error', reject);
        req.flushHeaders();
      });
    const body = JSON.stringify(claude('Hello, expecting to continue.'));
    const wrongKey = await post({ 'x-api-key': 'hr-gw-not-a-key-000000000000' }, body);
    // Node closes a connection whose announced body was refused unsent, rather than wait for it.
    expect(wrongKey).toMatchObject({ status: 401, continued: false, connection: 'close' });
    const oversized = await post({ 'x-api-key': GATEWAY_KEYS.app }, body, 10 * 1024 * 1024);
    expect(oversized).toMatchObject({ status: 413, continued: false, connection: 'close' });
    const good = await post({ 'x-api-key': GATEWAY_KEYS.app }, body);
    expect(good).toMatchObject({ status: 200, continued: true });
    expect(JSON.parse(good.body)).toMatchObject({ type: 'message', model: SONNET });
  });

  it('answers HEAD on what it serves with GET, without a body, and names GET and HEAD to another method', async () => {
    const headers = { 'x-api-key': GATEWAY_KEYS.app, 'anthropic-version': '2023-06-01' };
    const head = await fetch(`${fleet.gateway.url}/v1/models`, { method: 'HEAD', headers });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toContain('application/json');
    expect(await head.text()).toBe('');
    const options = await fetch(`${fleet.gateway.url}/v1/models`, { method: 'OPTIONS', headers });
    expect(options.status).toBe(405);
    expect(options.headers.get('allow')).toBe('GET, HEAD');
    expect(await options.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('OPTIONS /v1/models: method not allowed') } });
  });

  it("pages the Anthropic model list as Anthropic does (limit, after_id, before_id), and the SDK's auto-pagination walks it once", async () => {
    const client = fleet.anthropic();
    const all = (await client.models.list()).data.map((m) => m.id);
    expect(all).toHaveLength(2);
    const first = await client.models.list({ limit: 1 });
    expect(first.data.map((m) => m.id)).toEqual([all[0]]);
    expect(first.has_more).toBe(true);
    const next = await client.models.list({ limit: 1, after_id: all[0]! });
    expect(next.data.map((m) => m.id)).toEqual([all[1]]);
    expect(next.has_more).toBe(false);
    expect((await client.models.list({ limit: 1, before_id: all[1]! })).data.map((m) => m.id)).toEqual([all[0]]);
    const walked: string[] = [];
    for await (const model of client.models.list({ limit: 1 })) walked.push(model.id);
    expect(walked).toEqual(all);
  });

  it('keeps two clients without tenants apart under the same idempotency key: each gets its own answer', async () => {
    const headers = { 'headroom-idempotency-key': 'gateway-idem-shared' };
    const callsBefore = sim.stats().admissions.length;
    const app = await fleet.anthropic().messages.create(claude('The app asks this'), { headers }).withResponse();
    // Another client, another question, the same key: not the app's job, nor a 400 naming it.
    const capped = await fleet.anthropic(GATEWAY_KEYS.capped).messages.create(claude('The capped client asks that'), { headers }).withResponse();
    expect(capped.response.headers.get('headroom-job-id')).not.toBe(app.response.headers.get('headroom-job-id'));
    const cappedAgain = await fleet.anthropic(GATEWAY_KEYS.capped).messages.create(claude('The capped client asks that'), { headers }).withResponse();
    expect(cappedAgain.data).toEqual(capped.data);
    expect(sim.stats().admissions.length - callsBefore).toBe(2);
  });

  it("answers a repeated idempotency key with the first call's answer, and refuses the key on another request", async () => {
    const headers = { 'headroom-idempotency-key': 'gateway-idem-1' };
    const first = await fleet.anthropic().messages.create(claude('Idempotent question'), { headers }).withResponse();
    const again = await fleet.anthropic().messages.create(claude('Idempotent question'), { headers }).withResponse();
    expect(again.data).toEqual(first.data);
    expect(again.response.headers.get('headroom-job-id')).toBe(first.response.headers.get('headroom-job-id'));
    const callsBefore = sim.stats().admissions.length;
    // The same key on a different request: a client bug, told so (and not retried by the SDK),
    // where it used to get the first request's answer to a question it did not ask.
    const refused = await fleet.anthropic(undefined, { maxRetries: 2 }).messages.create(claude('A different question'), { headers }).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(Anthropic.BadRequestError);
    expect((refused as Error).message).toContain('headroom-idempotency-key: already names job');
    expect(sim.stats().admissions.length).toBe(callsBefore);
  });

  it("answers a repeated idempotency key whose body writes out a default the first left out (a curl retry's \"stream\": false, \"n\": 1) with the first call's job; another prompt is a 400", async () => {
    const headers = { 'headroom-idempotency-key': 'gateway-idem-defaults' };
    /** The retry as a hand-written curl sends it: the body written out, the key in a header. */
    const curl = (path: string, auth: Record<string, string>, body: unknown, key = headers) =>
      fetch(`${fleet.gateway.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth, ...key }, body: JSON.stringify(body) });
    const anthropicAuth = { 'x-api-key': GATEWAY_KEYS.app, 'anthropic-version': '2023-06-01' };
    const first = await fleet.anthropic().messages.create(claude('Retried by hand'), { headers }).withResponse();
    const callsBefore = sim.stats().admissions.length;
    const again = await curl('/v1/messages', anthropicAuth, { ...claude('Retried by hand'), stream: false });
    expect(again.status).toBe(200);
    expect(again.headers.get('headroom-job-id')).toBe(first.response.headers.get('headroom-job-id'));
    expect(again.headers.get('headroom-joined')).toBe('true');
    expect(await again.json()).toEqual(JSON.parse(JSON.stringify(first.data)));
    // The first call's answer, not a second provider call.
    expect(sim.stats().admissions.length).toBe(callsBefore);
    const other = await curl('/v1/messages', anthropicAuth, { ...claude('A different question by hand'), stream: false });
    expect(other.status).toBe(400);
    expect(await other.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('headroom-idempotency-key: already names job') } });

    // OpenAI's one choice and its nulls, written out by the retry.
    const chatKey = { 'headroom-idempotency-key': 'gateway-idem-defaults-chat' };
    const chatFirst = await fleet.openai().chat.completions.create(chat('Retried by hand'), { headers: chatKey }).withResponse();
    const chatAgain = await curl('/v1/chat/completions', { authorization: `Bearer ${GATEWAY_KEYS.app}` }, { ...chat('Retried by hand'), n: 1, stream: false, temperature: null }, chatKey);
    expect(chatAgain.status).toBe(200);
    expect(chatAgain.headers.get('headroom-job-id')).toBe(chatFirst.response.headers.get('headroom-job-id'));
    expect(await chatAgain.json()).toEqual(JSON.parse(JSON.stringify(chatFirst.data)));
    const chatOther = await curl('/v1/chat/completions', { authorization: `Bearer ${GATEWAY_KEYS.app}` }, { ...chat('Retried by hand'), n: 2 }, chatKey);
    expect(chatOther.status).toBe(400);
    expect(sim.stats().admissions.length).toBe(callsBefore + 1);
  });

  it('takes a non-ASCII idempotency key, as the SDK sends it (latin1 bytes), and answers its repeat with the same job', async () => {
    // It was refused as "holds a control character": the key only feeds a hashed job id.
    const headers = { 'headroom-idempotency-key': 'héllo-gateway' };
    const first = await fleet.anthropic().messages.create(claude('Idempotent non-ASCII question'), { headers }).withResponse();
    const again = await fleet.anthropic().messages.create(claude('Idempotent non-ASCII question'), { headers }).withResponse();
    expect(again.response.headers.get('headroom-job-id')).toMatch(/\.idem-[0-9a-f]{40}$/);
    expect(again.response.headers.get('headroom-job-id')).toBe(first.response.headers.get('headroom-job-id'));
    expect(again.data).toEqual(first.data);
  });

  it('never shows the provider key to the client, and the provider never sees the gateway key', async () => {
    await fleet.anthropic().messages.create(claude('Keys?'));
    const keysSeen = new Set(sim.stats().admissions.map((a) => a.key));
    expect(keysSeen.has(GATEWAY_KEYS.app)).toBe(false);
    expect(keysSeen.has(PROVIDER_KEY)).toBe(true);
  });
});
