/**
 * OpenAI's Responses API through the gateway, with the unmodified `openai` SDK pointed at it by
 * `baseURL` and a gateway key: the same Response (output and usage) as the simulator gives
 * directly, plain and streamed through the SDK's own `responses.stream()` helper, the events as
 * curl shows them, its bad input refused in OpenAI's shape, and a stream the client abandons
 * stopped and charged for what it produced.
 */
import { spawn } from 'node:child_process';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { Producer } from '@headroom/producer-sdk';
import { laneKeys } from '@headroom/queue';
import { estimateInputTokens } from '@headroom/queue/token-count';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { GATEWAY_KEYS, GPT, PROVIDER_KEY, SIM_MODELS, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';

let redis: EmbeddedRedis;
let sim: Simulator;
let fleet: GatewayFleet;
let direct: OpenAI;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  sim = await startSimulator({ latencyMs: 2, models: SIM_MODELS });
  fleet = await startGatewayFleet(redis.url, sim);
  direct = new OpenAI({ apiKey: PROVIDER_KEY, baseURL: `${sim.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await fleet?.close();
  await sim?.close();
  await redis?.stop();
});

const OPENAI_REQUEST_ID = /^req_[0-9A-Za-z]{32}$/;
const ask = (input: string, extra: Record<string, unknown> = {}) => ({ model: GPT, max_output_tokens: 1000, input, ...extra });
/** A Response's output without the item ids, which the provider draws afresh for every call. */
const outputOf = (r: OpenAI.Responses.Response) => r.output.map(({ id: _id, ...item }) => item);

describe('the Responses API through the gateway', () => {
  it('responses.create gets the Response the provider gives directly, and says how it was served', async () => {
    const body = ask('What is a priority queue?', { instructions: 'Answer in one paragraph.' });
    const viaGateway = await fleet.openai().responses.create(body).withResponse();
    const directly = await direct.responses.create(body);
    expect(viaGateway.data.object).toBe('response');
    expect(outputOf(viaGateway.data)).toEqual(outputOf(directly));
    expect(viaGateway.data.output_text).toBe(directly.output_text);
    expect(viaGateway.data.output_text.length).toBeGreaterThan(0);
    expect(viaGateway.data.usage).toEqual(directly.usage);
    expect(viaGateway.data.status).toBe('completed');
    const h = viaGateway.response.headers;
    expect(h.get('headroom-lane')).toBe('normal');
    expect(h.get('headroom-model')).toBe(GPT);
    expect(viaGateway.request_id).toMatch(OPENAI_REQUEST_ID);
  });

  it('input items (messages and a function call output) and a clipped answer come back as the provider gives them', async () => {
    const body = {
      model: GPT,
      max_output_tokens: 16,
      input: [
        { role: 'developer' as const, content: 'Be terse.' },
        { type: 'message' as const, role: 'user' as const, content: [{ type: 'input_text' as const, text: 'What is the weather in Oslo? Then tell me a long story.' }] },
        { type: 'function_call' as const, call_id: 'call_1', name: 'weather', arguments: '{"city":"Oslo"}' },
        { type: 'function_call_output' as const, call_id: 'call_1', output: '{"celsius": 4}' },
      ],
    };
    const viaGateway = await fleet.openai().responses.create(body);
    const directly = await direct.responses.create(body);
    expect(outputOf(viaGateway)).toEqual(outputOf(directly));
    expect(viaGateway.usage).toEqual(directly.usage);
    expect(viaGateway.status).toBe(directly.status);
    expect(viaGateway.status).toBe('incomplete');
    expect(viaGateway.incomplete_details).toEqual({ reason: 'max_output_tokens' });
  });

  it('responses.stream() yields the same text and final Response as streaming directly', async () => {
    const body = ask('Tell me a short story about a harbour.');
    const collect = async (client: OpenAI) => {
      const stream = client.responses.stream(body);
      const deltas: string[] = [];
      stream.on('response.output_text.delta', (e) => deltas.push(e.delta));
      const final = await stream.finalResponse();
      return { deltas, final };
    };
    const viaGateway = await collect(fleet.openai());
    const directly = await collect(direct);
    expect(viaGateway.deltas.length).toBeGreaterThan(1);
    expect(viaGateway.deltas.join('')).toBe(directly.final.output_text);
    expect(viaGateway.final.output_text).toBe(directly.final.output_text);
    expect(outputOf(viaGateway.final)).toEqual(outputOf(directly.final));
    expect(viaGateway.final.usage).toEqual(directly.final.usage);
    expect(viaGateway.final.status).toBe('completed');
  });

  it('a function call and its output, plain and through responses.stream(), as the provider gives them directly', async () => {
    const tools = [{ type: 'function' as const, name: 'get_weather', strict: false, parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } } }];
    const body = { ...ask('Weather in Oslo?'), tools, tool_choice: 'required' as const };
    const callOf = (r: OpenAI.Responses.Response) => r.output.find((i): i is OpenAI.Responses.ResponseFunctionToolCall => i.type === 'function_call');
    const directly = await direct.responses.create(body);
    const viaGateway = await fleet.openai().responses.create(body);
    expect(callOf(viaGateway)).toMatchObject({ name: 'get_weather', arguments: callOf(directly)?.arguments });
    expect(viaGateway.usage).toEqual(directly.usage);
    // Streamed: the arguments arrive as function_call_arguments deltas, which the helper puts together.
    const stream = fleet.openai().responses.stream(body);
    const deltas: string[] = [];
    stream.on('response.function_call_arguments.delta', (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    expect(deltas.join('')).toBe(callOf(directly)?.arguments);
    expect(callOf(final)).toMatchObject({ name: 'get_weather', arguments: callOf(directly)?.arguments });
    expect(final.usage).toEqual(directly.usage);
    // The next turn: the call and its output go back as input items, and the answer is text.
    const call = callOf(final)!;
    const next = await fleet.openai().responses.create({
      ...ask('Weather in Oslo?'),
      tools,
      input: [
        { role: 'user', content: 'Weather in Oslo?' },
        { type: 'function_call', call_id: call.call_id, name: call.name, arguments: call.arguments },
        { type: 'function_call_output', call_id: call.call_id, output: '4 C, snow' },
      ],
    });
    expect(next.output_text.length).toBeGreaterThan(0);
  });

  it('create({ stream: true }) yields the provider\'s events in its order, numbered as it numbered them', async () => {
    const body = { ...ask('Say hello to the harbour master.'), stream: true as const };
    const events = async (client: OpenAI) => {
      const out: { type: string; sequence_number: number }[] = [];
      for await (const event of await client.responses.create(body)) out.push({ type: event.type, sequence_number: event.sequence_number });
      return out;
    };
    const viaGateway = await events(fleet.openai());
    const directly = await events(direct);
    expect(viaGateway.map((e) => e.type)).toEqual(directly.map((e) => e.type));
    expect(viaGateway.map((e) => e.sequence_number)).toEqual(viaGateway.map((_, i) => i));
    expect(viaGateway[0]?.type).toBe('response.created');
    expect(viaGateway.at(-1)?.type).toBe('response.completed');
  });

  it('the producer SDK runs and streams Responses jobs (api "responses") the same way', async () => {
    const producer = new Producer({ redis: redis.url, prefix: fleet.prefix });
    try {
      const request = ask('What does a harbour master do?');
      const run = await producer.run({ priority: 'HIGH', provider: 'openai', api: 'responses', request });
      const directly = await direct.responses.create(request);
      expect(run.model).toBe(GPT);
      expect(outputOf(run.response as OpenAI.Responses.Response)).toEqual(outputOf(directly));
      expect(run.usage).toMatchObject({ inputTokens: directly.usage!.input_tokens, outputTokens: directly.usage!.output_tokens });
      const stream = await producer.stream({ priority: 'HIGH', provider: 'openai', api: 'responses', request });
      const types: string[] = [];
      for await (const event of stream) types.push((event as { type: string }).type);
      const result = await stream.result();
      expect(types[0]).toBe('response.created');
      expect(types.at(-1)).toBe('response.completed');
      expect(result.streamed).toBe(true);
      expect(result.timings.ttftMs).toBeGreaterThanOrEqual(0);
      expect(outputOf(result.response as OpenAI.Responses.Response)).toEqual(outputOf(directly));
      expect(result.usage).toEqual(run.usage);
    } finally {
      await producer.close();
    }
  });

  it('curl -N shows the named events as they come, with no [DONE] after the last', async () => {
    const out = await new Promise<string>((resolve, reject) => {
      const curl = spawn('curl', [
        '-sN',
        `${fleet.gateway.url}/v1/responses`,
        '-H', 'content-type: application/json',
        '-H', `authorization: Bearer ${GATEWAY_KEYS.app}`,
        '-H', 'headroom-priority: high',
        '-d', JSON.stringify({ ...ask('Say hello.'), stream: true }),
      ]);
      let text = '';
      curl.stdout.on('data', (d: Buffer) => { text += d.toString(); });
      curl.on('error', reject);
      curl.on('close', () => resolve(text));
    });
    const names = [...out.matchAll(/^event: ([\w.]+)$/gm)].map((m) => m[1]);
    expect(names[0]).toBe('response.created');
    expect(names).toContain('response.output_text.delta');
    expect(names.at(-1)).toBe('response.completed');
    expect(out).toMatch(/^data: \{"type":"response\.created","sequence_number":0/m);
    expect(out).not.toContain('[DONE]');
  });

  it('a saved prompt with no input is a call, plain and through responses.stream(), as the provider answers it directly', async () => {
    const body = { model: GPT, max_output_tokens: 16, prompt: { id: 'pmpt_123', variables: { topic: 'lighthouses' } } };
    const viaGateway = await fleet.openai().responses.create(body);
    const directly = await direct.responses.create(body);
    expect(viaGateway.status).toBe(directly.status);
    expect(viaGateway.prompt).toEqual(body.prompt);
    expect(outputOf(viaGateway)).toEqual(outputOf(directly));
    expect(viaGateway.usage).toEqual(directly.usage);
    const streamed = await fleet.openai().responses.stream({ model: GPT, max_output_tokens: 16, prompt: { id: 'pmpt_123' } }).finalResponse();
    expect(streamed.output_text.length).toBeGreaterThan(0);
    // Neither input nor a saved prompt: refused naming both, in OpenAI's shape.
    const neither = await fleet.openai().responses.create({ model: GPT, max_output_tokens: 16 }).then(() => undefined, (e: unknown) => e);
    expect(neither).toBeInstanceOf(OpenAI.BadRequestError);
    expect((neither as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('input');
    expect((neither as InstanceType<typeof OpenAI.BadRequestError>).code).toBe('missing_required_parameter');
    expect((neither as Error).message).toMatch(/input.*prompt/);
  });

  it("refuses a bad Responses request in OpenAI's shape, naming the field, and enqueues nothing", async () => {
    const admin = new Redis(redis.url);
    const jobKeys = async () => (await admin.keys(`${laneKeys(fleet.prefix, 'normal').jobKeyPrefix}*`)).length;
    const keysBefore = await jobKeys();
    const callsBefore = sim.stats().admissions.length;
    const refusals = [
      { body: { model: GPT, max_output_tokens: 50 }, param: 'input' },
      { body: { model: GPT, input: [] }, param: 'input' },
      { body: { model: GPT, input: 'hi', background: true }, param: 'background' },
      { body: { model: GPT, input: 'hi', max_output_tokens: 0 }, param: 'max_output_tokens' },
      { body: { model: GPT, input: 'hi', stream_options: { include_obfuscation: false } }, param: 'stream_options' },
      { body: { model: GPT, input: [{ content: 'no role, no type' }] }, param: 'input' },
    ];
    for (const { body, param } of refusals) {
      const err = await fleet.openai().responses.create(body as never).then(() => undefined, (e: unknown) => e);
      expect(err, JSON.stringify(body)).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).message, JSON.stringify(body)).toContain(param);
    }
    const unknownModel = await fleet.openai().responses.create({ model: 'gpt-nope', input: 'hi' }).then(() => undefined, (e: unknown) => e);
    expect(unknownModel).toBeInstanceOf(OpenAI.NotFoundError);
    // A streamed call cannot go to the batch lane.
    const batchStream = await fleet.openai().responses.create({ ...ask('hi'), stream: true }, { headers: { 'headroom-sla': 'none' } }).then(() => undefined, (e: unknown) => e);
    expect(batchStream).toBeInstanceOf(OpenAI.BadRequestError);
    expect((batchStream as Error).message).toContain('sla "none"');
    expect(await jobKeys()).toBe(keysBefore);
    expect(sim.stats().admissions.length).toBe(callsBefore);
    admin.disconnect();
  });

  it('responses.inputTokens.count() is answered by the gateway with the estimate it reserves with, and calls nothing', async () => {
    const callsBefore = sim.stats().admissions.length;
    const body = { model: GPT, input: 'How many tokens is this?', instructions: 'Answer in one paragraph.' };
    const { data: counted, response } = await fleet.openai().responses.inputTokens.count(body).withResponse();
    expect(counted).toEqual({ object: 'response.input_tokens', input_tokens: estimateInputTokens(body) });
    expect(response.headers.get('headroom-estimate')).toBe('o200k_base');
    // Instructions alone are a prompt the model reads, counted as the call's reservation counts them.
    const alone = await fleet.openai().responses.inputTokens.count({ instructions: 'Answer in one paragraph.' });
    expect(alone.input_tokens).toBeGreaterThan((await fleet.openai().responses.inputTokens.count({})).input_tokens);
    // A stored conversation is at OpenAI, out of sight: refused by name rather than counted short.
    for (const param of ['previous_response_id', 'conversation'] as const) {
      const err = await fleet.openai().responses.inputTokens.count({ ...body, [param]: 'resp_0123' }).then(() => undefined, (e: unknown) => e);
      expect(err, param).toBeInstanceOf(OpenAI.BadRequestError);
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(param);
    }
    const badInput = await fleet.openai().responses.inputTokens.count({ input: [] }).then(() => undefined, (e: unknown) => e);
    expect((badInput as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('input');
    expect(sim.stats().admissions.length).toBe(callsBefore);
  });

  it("a stored response's endpoints answer OpenAI's 404, saying the gateway does not serve them and where the response is", async () => {
    const stored = await fleet.openai().responses.create(ask('Remember this.'));
    for (const [name, call] of [
      ['retrieve', () => fleet.openai().responses.retrieve(stored.id)],
      ['delete', () => fleet.openai().responses.delete(stored.id)],
      ['cancel', () => fleet.openai().responses.cancel(stored.id)],
      ['input items', () => fleet.openai().responses.inputItems.list(stored.id)],
    ] as const) {
      const err = await (call as () => Promise<unknown>)().then(() => undefined, (e: unknown) => e);
      expect(err, name).toBeInstanceOf(OpenAI.NotFoundError);
      expect((err as Error).message, name).toMatch(/stored responses are not served through the gateway.*fleet's OpenAI project.*store: false/);
    }
  });

  it('a stream the client abandons mid-way stops the provider call, charged the output it produced', async () => {
    sim.setPace({ streamTokenMs: 25 });
    try {
      const abort = new AbortController();
      const before = sim.stats().admissions.length;
      const stream = await fleet.openai().responses.create({ model: GPT, max_output_tokens: 400, input: 'A long story, please.', stream: true }, { signal: abort.signal });
      let deltas = 0;
      await (async () => {
        for await (const event of stream) if (event.type === 'response.output_text.delta' && ++deltas === 8) abort.abort();
      })().catch(() => undefined);
      expect(deltas).toBeGreaterThanOrEqual(8);
      const deadline = Date.now() + 20_000;
      let admission = sim.stats().admissions.slice(before).find((a) => a.model === GPT && a.done);
      while (!admission && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        admission = sim.stats().admissions.slice(before).find((a) => a.model === GPT && a.done);
      }
      expect(admission).toMatchObject({ streamed: true, clientClosed: true });
      expect(admission!.outputSent).toBeGreaterThanOrEqual(8);
      expect(admission!.outputSent).toBeLessThan(400);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });
});
