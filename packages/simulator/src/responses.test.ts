import { Tiktoken } from 'js-tiktoken/lite';
import cl100kBase from 'js-tiktoken/ranks/cl100k_base';
import OpenAI, { type APIError } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AdmissionRecord, type Simulator, type SimulatorStats, startSimulator } from './index.js';

const MODEL = 'gpt-4o-mini';
const ask = (input: OpenAI.Responses.ResponseCreateParams['input'], max_output_tokens = 100) => ({ model: MODEL, max_output_tokens, input });

async function failure(promise: Promise<unknown>): Promise<APIError> {
  try {
    await promise;
  } catch (error) {
    return error as APIError;
  }
  throw new Error('expected the call to fail');
}

async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 5));
}

// Counted apart from the simulator, with the same encoding: 3 per message plus its role, 3 to prime the reply.
const cl100k = new Tiktoken(cl100kBase);
const messageTokens = (role: string, text: string) => 3 + cl100k.encode(role).length + cl100k.encode(text).length;

const STREAM_ORDER_HEAD = ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added'];
const STREAM_ORDER_TAIL = ['response.output_text.done', 'response.content_part.done', 'response.output_item.done'];

describe('OpenAI Responses API through the openai SDK', () => {
  let sim: Simulator;
  let client: OpenAI;

  beforeAll(async () => {
    sim = await startSimulator({
      latencyMs: 0,
      outputTokens: 50,
      apiKeys: ['sk-oai'],
      models: {
        [MODEL]: { provider: 'openai', limits: { rpm: 100, tpm: 1000 } },
        'gpt-4.1': { provider: 'openai', limits: { rpm: 2, tpm: 100_000 } },
        'gpt-small-window': { provider: 'openai', contextWindow: 40, limits: { rpm: 100, tpm: 100_000 } },
        'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100, itpm: 10_000, otpm: 10_000 } },
      },
    });
    client = new OpenAI({ apiKey: 'sk-oai', baseURL: `${sim.url}/v1`, maxRetries: 0 });
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  it('answers with a completed Response whose output_text, usage and headers add up', async () => {
    const { data, response } = await client.responses.create({ ...ask('Tell me about lanes.'), instructions: 'Be brief.' }).withResponse();
    expect(data).toMatchObject({
      object: 'response',
      status: 'completed',
      model: MODEL,
      error: null,
      incomplete_details: null,
      instructions: 'Be brief.',
      max_output_tokens: 100,
      parallel_tool_calls: true,
      tool_choice: 'auto',
      tools: [],
      text: { format: { type: 'text' } },
      truncation: 'disabled',
      store: true,
      metadata: {},
    });
    expect(data.id).toMatch(/^resp_/);
    expect(data.completed_at).toBeGreaterThanOrEqual(data.created_at);
    expect(data.output).toHaveLength(1);
    const [message] = data.output;
    if (message?.type !== 'message') throw new Error('expected a message');
    expect(message).toMatchObject({ status: 'completed', role: 'assistant' });
    expect(message.id).toMatch(/^msg_/);
    expect(message.content).toEqual([{ type: 'output_text', text: data.output_text, annotations: [], logprobs: [] }]);
    expect(data.output_text.length).toBeGreaterThan(0);

    // The prompt counts as Chat's system + user messages would.
    const promptTokens = 3 + messageTokens('system', 'Be brief.') + messageTokens('user', 'Tell me about lanes.');
    expect(data.usage).toEqual({
      input_tokens: promptTokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 50,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: promptTokens + 50,
    });
    const chat = await client.chat.completions.create({
      model: MODEL,
      max_tokens: 100,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Tell me about lanes.' },
      ],
    });
    expect(chat.usage?.prompt_tokens).toBe(promptTokens);

    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('1000');
    // Charged prompt + max_output_tokens, corrected to prompt + actual output at the end.
    expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBe(1000 - promptTokens - 50);
    expect(sim.stats().requestsByPath['POST /v1/responses']).toBe(1);
  });

  it('counts input items as the messages they are, and other items by their text', async () => {
    const plain = await client.responses.create(ask('Sum these.'));
    const items = await client.responses.create(ask([{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Sum these.' }] }]));
    expect(items.usage?.input_tokens).toBe(plain.usage?.input_tokens);

    const withOutput = await client.responses.create(
      ask([
        { role: 'user', content: 'Sum these.' },
        { type: 'function_call_output', call_id: 'call_1', output: '42' },
      ]),
    );
    expect(withOutput.usage?.input_tokens).toBe((plain.usage?.input_tokens ?? 0) + messageTokens('tool', '42'));
  });

  it('answers a saved prompt with no input, reading it as the values of its variables (it keeps no templates)', async () => {
    const saved = await client.responses.create({ model: MODEL, max_output_tokens: 100, prompt: { id: 'pmpt_123' } });
    expect(saved.status).toBe('completed');
    expect(saved.prompt).toEqual({ id: 'pmpt_123' });
    // An empty prompt: only the reply's priming.
    expect(saved.usage?.input_tokens).toBe(3);
    const filled = await client.responses.create({ model: MODEL, max_output_tokens: 100, prompt: { id: 'pmpt_123', variables: { city: 'Oslo' } } });
    expect(filled.usage?.input_tokens).toBe((await client.responses.create(ask('Oslo'))).usage?.input_tokens);
  });

  it('is incomplete when max_output_tokens cuts the answer short', async () => {
    const clipped = await client.responses.create(ask('a long answer', 16));
    expect(clipped).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, completed_at: null, max_output_tokens: 16 });
    expect(clipped.output[0]).toMatchObject({ type: 'message', status: 'incomplete' });
    expect(clipped.usage?.output_tokens).toBe(16);
    expect(clipped.output_text.length).toBeGreaterThan(0);
    expect(clipped.usage?.total_tokens).toBe((clipped.usage?.input_tokens ?? 0) + 16);
  });

  it('streams the same Response as the plain call, which the SDK stream helper assembles', async () => {
    for (const max of [100, 16]) {
      const params = { ...ask('stream this', max), instructions: 'Answer in words.' };
      const plain = await client.responses.create(params);
      const final = await client.responses.stream(params).finalResponse();
      expect(final.output_text).toBe(plain.output_text);
      expect(final.usage).toEqual(plain.usage);
      expect(final.status).toBe(plain.status);
      const [message] = final.output;
      expect(final).toMatchObject({
        ...plain,
        id: final.id,
        created_at: final.created_at,
        completed_at: final.completed_at,
        output: [{ ...plain.output[0], id: message?.type === 'message' ? message.id : null }],
      });
    }
    expect(sim.stats().admissions.map((a) => [a.streamed, a.clientClosed, a.outputSent])).toEqual([
      [false, false, 50],
      [true, false, 50],
      [false, false, 16],
      [true, false, 16],
    ]);
  });

  it('answers a request that forces a function with a function_call item, the same plain and through responses.stream()', async () => {
    const tools = [{ type: 'function' as const, name: 'get_weather', strict: false, parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } } } }];
    const params = { ...ask('Weather in Oslo?', 100), tools, tool_choice: 'required' as const };
    const plain = await client.responses.create(params);
    const [call] = plain.output;
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', status: 'completed', call_id: expect.stringMatching(/^call_/) });
    const args = JSON.parse((call as OpenAI.Responses.ResponseFunctionToolCall).arguments) as Record<string, unknown>;
    expect(Object.keys(args).sort()).toEqual(['city', 'days']);
    const stream = client.responses.stream(params);
    const deltas: string[] = [];
    stream.on('response.function_call_arguments.delta', (e) => deltas.push(e.delta));
    const final = await stream.finalResponse();
    expect(deltas.join('')).toBe((call as OpenAI.Responses.ResponseFunctionToolCall).arguments);
    expect(deltas.length).toBe(plain.usage?.output_tokens);
    expect(final.output).toMatchObject([{ type: 'function_call', name: 'get_weather', arguments: (call as OpenAI.Responses.ResponseFunctionToolCall).arguments }]);
    expect(final.usage).toEqual(plain.usage);
    // Named, that function; left to the model, text.
    const named = await client.responses.create({ ...params, tool_choice: { type: 'function', name: 'get_weather' } });
    expect(named.output[0]).toMatchObject({ type: 'function_call', name: 'get_weather' });
    const auto = await client.responses.create({ ...params, tool_choice: 'auto' });
    expect(auto.output[0]?.type).toBe('message');
  });

  it('streams raw events in order, sequence numbers from 0, one text delta per output token', async () => {
    const plain = await client.responses.create(ask('event by event'));
    const stream = await client.responses.create({ ...ask('event by event'), stream: true });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);

    expect(events.map((e) => e.type)).toEqual([...STREAM_ORDER_HEAD, ...Array.from({ length: 50 }, () => 'response.output_text.delta'), ...STREAM_ORDER_TAIL, 'response.completed']);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const [created, inProgress, added, partAdded] = events;
    for (const start of [created, inProgress]) {
      expect(start).toMatchObject({ response: { status: 'in_progress', output: [], usage: null, completed_at: null } });
    }
    expect(added).toMatchObject({ output_index: 0, item: { type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
    const itemId = added?.type === 'response.output_item.added' ? added.item.id : undefined;
    expect(itemId).toMatch(/^msg_/);
    expect(partAdded).toEqual({
      type: 'response.content_part.added',
      sequence_number: 3,
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
    });
    const deltas = events.filter((e) => e.type === 'response.output_text.delta');
    expect(deltas.every((d) => d.item_id === itemId && d.output_index === 0 && d.content_index === 0 && d.delta.length > 0 && d.logprobs.length === 0)).toBe(true);
    const text = deltas.map((d) => d.delta).join('');
    expect(text).toBe(plain.output_text);
    expect(events.at(-4)).toMatchObject({ type: 'response.output_text.done', item_id: itemId, text });
    expect(events.at(-3)).toMatchObject({ type: 'response.content_part.done', part: { type: 'output_text', text } });
    expect(events.at(-2)).toMatchObject({ type: 'response.output_item.done', item: { id: itemId, status: 'completed', content: [{ text }] } });
    expect(events.at(-1)).toMatchObject({ type: 'response.completed', response: { status: 'completed', usage: plain.usage, output: [{ id: itemId }] } });
  });

  it('names every event on the wire and ends on the terminal event, with no [DONE]', async () => {
    const response = await fetch(`${sim.url}/v1/responses`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-oai', 'content-type': 'application/json' },
      body: JSON.stringify({ ...ask('on the wire', 16), stream: true }),
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('100');
    const blocks = (await response.text()).split('\n\n').filter((block) => block !== '');
    const events = blocks.map((block) => {
      const [name, data, ...rest] = block.split('\n');
      expect(rest).toEqual([]);
      expect(name).toMatch(/^event: /);
      expect(data).toMatch(/^data: \{/);
      return { name: name?.slice('event: '.length), data: JSON.parse(data?.slice('data: '.length) ?? 'null') as { type: string } };
    });
    expect(events.every((e) => e.data.type === e.name)).toBe(true);
    expect(events.map((e) => e.name)).toEqual([...STREAM_ORDER_HEAD, ...Array.from({ length: 16 }, () => 'response.output_text.delta'), ...STREAM_ORDER_TAIL, 'response.incomplete']);
    expect(events.at(-1)?.data).toMatchObject({ response: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' }, usage: { output_tokens: 16 } } });
    expect(events.at(-2)?.data).toMatchObject({ item: { status: 'incomplete' } });
  });

  it('refuses bad requests with OpenAI’s param and code', async () => {
    const cases: [body: Record<string, unknown>, param: string, code: string][] = [
      [{ model: MODEL }, 'input', 'missing_required_parameter'],
      [{ model: MODEL, input: [] }, 'input', 'empty_array'],
      [{ model: MODEL, input: '' }, 'input', 'empty_string'],
      [{ model: MODEL, input: 42 }, 'input', 'invalid_type'],
      [{ model: MODEL, input: [{ role: 'robot', content: 'hi' }] }, 'input[0].role', 'invalid_value'],
      [{ model: MODEL, input: [{ role: 'user' }] }, 'input[0].content', 'missing_required_parameter'],
      [{ model: MODEL, input: ['hi'] }, 'input[0]', 'invalid_type'],
      [{ model: MODEL, input: 'hi', max_output_tokens: 8 }, 'max_output_tokens', 'integer_below_min_value'],
      [{ model: MODEL, input: 'hi', max_output_tokens: 20.5 }, 'max_output_tokens', 'invalid_type'],
      [{ model: MODEL, input: 'hi', max_output_tokens: 100_000 }, 'max_output_tokens', 'invalid_value'],
      [{ model: MODEL, input: 'hi', instructions: 7 }, 'instructions', 'invalid_type'],
      [{ model: MODEL, input: 'hi', background: true }, 'background', 'unsupported_value'],
      [{ model: MODEL, prompt: {} }, 'prompt.id', 'missing_required_parameter'],
      [{ model: MODEL, prompt: 'pmpt_123' }, 'prompt', 'invalid_type'],
      [{ input: 'hi' }, 'model', 'missing_required_parameter'],
      [{ model: 'gpt-small-window', input: 'a prompt far longer than the forty tokens this model can read, '.repeat(3) }, 'input', 'context_length_exceeded'],
    ];
    for (const [body, param, code] of cases) {
      const error = await failure(client.responses.create(body as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming));
      expect(error, JSON.stringify(body)).toBeInstanceOf(OpenAI.BadRequestError);
      expect(error.type).toBe('invalid_request_error');
      expect((error as APIError & { param?: string }).param, JSON.stringify(body)).toBe(param);
      expect(error.code, JSON.stringify(body)).toBe(code);
    }
    const background = await failure(client.responses.create({ ...ask('hi'), background: true }));
    expect(background.message).toMatch(/Background responses are not supported by the simulator/);

    for (const model of ['gpt-nonexistent', 'claude-haiku-4-5']) {
      const missing = await failure(client.responses.create({ ...ask('hi'), model }));
      expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
      expect(missing.code).toBe('model_not_found');
    }
    // Nothing was admitted.
    expect(sim.stats().admissions).toEqual([]);
  });

  it('draws from the same pool as chat completions, with the same 429s', async () => {
    await client.chat.completions.create({ model: 'gpt-4.1', max_tokens: 20, messages: [{ role: 'user', content: 'one' }] });
    await client.responses.create({ ...ask('two', 20), model: 'gpt-4.1' });
    const byRequests = await failure(client.responses.create({ ...ask('three', 20), model: 'gpt-4.1' }));
    expect(byRequests).toBeInstanceOf(OpenAI.RateLimitError);
    expect(byRequests.type).toBe('requests');
    expect(byRequests.code).toBe('rate_limit_exceeded');
    expect(byRequests.headers?.get('retry-after')).toBe('30');
    expect(byRequests.headers?.get('x-ratelimit-remaining-requests')).toBe('0');

    // TPM 1000: max_output_tokens is reserved up front.
    await client.responses.create(ask('first', 900));
    const byTokens = await failure(client.responses.create(ask('second', 950)));
    expect(byTokens).toBeInstanceOf(OpenAI.RateLimitError);
    expect(byTokens.type).toBe('tokens');
    expect(byTokens.message).toMatch(/tokens per min \(TPM\): Limit 1000/);
    const retryAfter = Number(byTokens.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(2);
    // The default ceiling (the model's 16,384) is more than the whole minute: no retry-after.
    const huge = await failure(client.responses.create({ model: MODEL, input: 'huge' }));
    expect(huge.message).toContain('Request too large');
    expect(huge.headers?.get('retry-after')).toBeNull();
  });

  it('answers injected faults in OpenAI shape, mid-stream ones included', async () => {
    sim.injectFaults({ model: MODEL, status: 503, count: 1 });
    const unavailable = await failure(client.responses.create(ask('hi')));
    expect(unavailable).toBeInstanceOf(OpenAI.InternalServerError);
    expect(unavailable.status).toBe(503);

    sim.injectFaults({ model: MODEL, malformed: true, count: 1 });
    // The stream helper passes the SDK's parse failure on as an OpenAIError.
    const malformed = await failure(client.responses.stream(ask('hi')).finalResponse());
    expect(malformed.message).toMatch(/malformed server-sent event JSON/);
    expect(malformed).not.toBeInstanceOf(OpenAI.APIError);

    sim.injectFaults({ model: MODEL, cut: true, count: 1 });
    // The line dropped mid-stream: the SDK sees a connection error, not an API answer.
    expect(await failure(client.responses.stream(ask('hi')).finalResponse())).toBeInstanceOf(OpenAI.APIConnectionError);

    sim.injectFaults({ model: MODEL, malformed: true, count: 1 });
    expect(await failure(client.responses.create(ask('hi')))).toBeInstanceOf(SyntaxError);

    expect(sim.stats().models[MODEL]?.faultsInjected).toEqual({ '503': 1, malformed: 2, cut: 1 });
    // Faults after admission charge the whole answer; the streams' clients saw half of it.
    expect(sim.stats().admissions.map((a) => [a.streamed, a.clientClosed, a.output, a.outputSent])).toEqual([
      [true, false, 50, 25],
      [true, false, 50, 25],
      [false, false, 50, 50],
    ]);
  });

  it('reports a prompt prefix seen recently as cached_tokens, plain and streamed', async () => {
    const manual = Array.from({ length: 200 }, (_, i) => `Rule ${i}: keep the queue moving.`).join('\n');
    const cachedSim = await startSimulator({ latencyMs: 0, outputTokens: 10, models: { [MODEL]: { provider: 'openai', limits: { rpm: 100, tpm: 100_000 } } } });
    try {
      const sdk = new OpenAI({ apiKey: 'k', baseURL: `${cachedSim.url}/v1`, maxRetries: 0 });
      const first = await sdk.responses.create({ ...ask('first question'), instructions: manual });
      expect(first.usage?.input_tokens).toBeGreaterThan(1500);
      expect(first.usage?.input_tokens_details.cached_tokens).toBe(0);
      const second = await sdk.responses.create({ ...ask('second question'), instructions: manual });
      const hit = second.usage?.input_tokens_details.cached_tokens ?? 0;
      expect(hit).toBeGreaterThanOrEqual(1024);
      expect(hit % 128).toBe(0);
      const streamed = await sdk.responses.stream({ ...ask('third question'), instructions: manual }).finalResponse();
      expect(streamed.usage?.input_tokens_details.cached_tokens).toBe(hit);
      // Chat shares the cache: the same system prompt is the same prefix.
      const chat = await sdk.chat.completions.create({ model: MODEL, max_tokens: 100, messages: [{ role: 'system', content: manual }, { role: 'user', content: 'fourth' }] });
      expect(chat.usage?.prompt_tokens_details?.cached_tokens).toBe(hit);
    } finally {
      await cachedSim.close();
    }
  });
});

describe('a Responses stream the client closes is charged what it had sent', () => {
  let sim: Simulator;
  // A frozen clock: the bucket never refills, so what is left in it is exactly what was charged.
  const now = Date.UTC(2026, 0, 1);

  beforeAll(async () => {
    sim = await startSimulator({ latencyMs: 0, streamTokenMs: 15, outputTokens: 200, clock: () => now, models: { [MODEL]: { provider: 'openai', limits: { rpm: 100, tpm: 10_000 } } } });
  });
  afterAll(() => sim.close());

  const stats = async (): Promise<SimulatorStats> => (await fetch(`${sim.url}/_sim/stats`)).json() as Promise<SimulatorStats>;
  const first = async (): Promise<AdmissionRecord | undefined> => (await stats()).admissions[0];

  it('stops generating at the close and corrects tokens/min to the prompt plus what was sent', async () => {
    const gpt = new OpenAI({ apiKey: 'k', baseURL: `${sim.url}/v1`, maxRetries: 0 });
    const stream = await gpt.responses.create({ ...ask('a long answer', 1000), stream: true });
    let received = 0;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') received += 1;
      if (received === 5) break; // leaving the loop aborts the request
    }
    await until(async () => (await first())?.done === true);

    const seen = await stats();
    const cut = seen.admissions[0];
    if (!cut) throw new Error('no admission');
    expect(cut).toMatchObject({ streamed: true, clientClosed: true, output: cut.outputSent });
    expect(cut.outputSent).toBeGreaterThanOrEqual(5);
    expect(cut.outputSent).toBeLessThan(200);
    expect(seen.models[MODEL]).toMatchObject({ clientClosed: 1, outputTokens: cut.outputSent });
    expect(seen.requestsByPath['POST /v1/responses']).toBe(1);

    const { data, response } = await gpt.responses.create(ask('after', 50)).withResponse();
    const usage = data.usage;
    if (!usage) throw new Error('no usage');
    expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBe(10_000 - (cut.input + cut.outputSent) - usage.total_tokens);
  });
});
