import Anthropic, { type APIError } from '@anthropic-ai/sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from './index.js';

const MODEL = 'claude-sonnet-4-6';
const ask = (content: string, max_tokens = 100) => ({ model: MODEL, max_tokens, messages: [{ role: 'user' as const, content }] });

// Thrown errors are asserted as what the SDK makes of them, so capture instead of try/catch noise.
async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

describe('Anthropic Messages through @anthropic-ai/sdk', () => {
  let sim: Simulator;
  let client: Anthropic;

  beforeAll(async () => {
    sim = await startSimulator({
      latencyMs: 0,
      outputTokens: 40,
      apiKeys: ['sk-ant-a', 'sk-ant-b'],
      models: {
        [MODEL]: { provider: 'anthropic', limits: { rpm: 3, itpm: 100_000, otpm: 100_000 } },
        'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100, itpm: 100_000, otpm: 20_000 } },
        'gpt-4o-mini': { provider: 'openai', limits: { rpm: 100, tpm: 100_000 } },
      },
    });
    client = new Anthropic({ apiKey: 'sk-ant-a', baseURL: sim.url, maxRetries: 0 });
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  it('answers a message with usage, a request id and every rate-limit header', async () => {
    const { data, response, request_id } = await client.messages.create(ask('What is a token bucket?')).withResponse();
    expect(data).toMatchObject({ type: 'message', role: 'assistant', model: MODEL, stop_reason: 'end_turn', stop_sequence: null });
    expect(data.id).toMatch(/^msg_01/);
    expect(data.content[0]?.type).toBe('text');
    expect(data.usage.output_tokens).toBe(40);
    expect(data.usage.input_tokens).toBeGreaterThan(6);
    expect(data.usage).toMatchObject({ cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
    expect(response.headers.get('request-id')).toMatch(/^req_/);
    expect(request_id).toBe(response.headers.get('request-id'));
    for (const dim of ['requests', 'input-tokens', 'output-tokens', 'tokens']) {
      for (const part of ['limit', 'remaining', 'reset']) expect(response.headers.get(`anthropic-ratelimit-${dim}-${part}`)).not.toBeNull();
    }
    expect(response.headers.get('anthropic-ratelimit-requests-remaining')).toBe('2');
    expect(response.headers.get('anthropic-ratelimit-input-tokens-remaining')).toBe('100000'); // rounded to thousands
    expect(new Date(response.headers.get('anthropic-ratelimit-requests-reset') ?? '').getTime()).toBeGreaterThan(Date.now());
  });

  it('gives the same request the same answer, and clips at max_tokens with stop_reason max_tokens', async () => {
    const first = await client.messages.create(ask('same question'));
    const second = await client.messages.create(ask('same question'));
    expect(second.content).toEqual(first.content);
    expect(second.id).not.toBe(first.id);
    const clipped = await client.messages.create(ask('same question', 5));
    expect(clipped.stop_reason).toBe('max_tokens');
    expect(clipped.usage.output_tokens).toBe(5);
  });

  it('counts tokens the same way it bills them', async () => {
    const { input_tokens } = await client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'count me in' }] });
    const message = await client.messages.create(ask('count me in'));
    expect(message.usage.input_tokens).toBe(input_tokens);
  });

  it('accepts x-api-key as well as the Bearer token the SDK sends, and refuses other keys with 401', async () => {
    const body = JSON.stringify(ask('hello'));
    const viaXApiKey = await fetch(`${sim.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'sk-ant-b', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body,
    });
    expect(viaXApiKey.status).toBe(200);

    const anonymous = await fetch(`${sim.url}/v1/messages`, { method: 'POST', headers: { 'anthropic-version': '2023-06-01' }, body });
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toEqual({
      type: 'error',
      error: { type: 'authentication_error', message: 'x-api-key header is required' },
      request_id: anonymous.headers.get('request-id'),
    });

    const intruder = new Anthropic({ apiKey: 'sk-ant-unknown', baseURL: sim.url, maxRetries: 0 });
    const error = await failure(intruder.messages.create(ask('hello')));
    expect(error).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((error as InstanceType<typeof Anthropic.AuthenticationError>).status).toBe(401);
  });

  it('requires the anthropic-version header', async () => {
    const response = await fetch(`${sim.url}/v1/messages`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-ant-a' },
      body: JSON.stringify(ask('hello')),
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/anthropic-version/);
  });

  it('refuses a bad body with 400 invalid_request_error, which the SDK maps to BadRequestError', async () => {
    const zero = await failure(client.messages.create(ask('hi', 0)));
    expect(zero).toBeInstanceOf(Anthropic.BadRequestError);
    expect((zero as APIError).type).toBe('invalid_request_error');
    expect((zero as Error).message).toContain('max_tokens: Input should be greater than or equal to 1');

    const empty = await failure(client.messages.create({ model: MODEL, max_tokens: 10, messages: [] }));
    expect((empty as Error).message).toContain('messages: at least one message is required');

    const badRole = await failure(
      client.messages.create({ model: MODEL, max_tokens: 10, messages: [{ role: 'system', content: 'x' }] } as unknown as Anthropic.MessageCreateParamsNonStreaming),
    );
    expect((badRole as Error).message).toContain("messages.0.role: Input should be 'user' or 'assistant'");

    // Over 21,333 max_tokens the SDK itself refuses a non-streaming call unless a timeout is set.
    const tooLong = await failure(client.messages.create({ ...ask('hi'), max_tokens: 64_001 }, { timeout: 60_000 }));
    expect((tooLong as Error).message).toContain('maximum allowed number of output tokens');
  });

  it('answers 404 not_found_error for a model it does not serve, including another provider’s', async () => {
    for (const model of ['claude-nonexistent', 'gpt-4o-mini']) {
      const error = await failure(client.messages.create({ ...ask('hi'), model }));
      expect(error).toBeInstanceOf(Anthropic.NotFoundError);
      expect((error as APIError).type).toBe('not_found_error');
    }
  });

  it('refuses the request past RPM with 429, retry-after and the headers, per api key', async () => {
    for (let i = 0; i < 3; i++) await client.messages.create(ask(`request ${i}`));
    const error = await failure(client.messages.create(ask('one too many')));
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    const limited = error as InstanceType<typeof Anthropic.RateLimitError>;
    expect(limited.status).toBe(429);
    expect(limited.type).toBe('rate_limit_error');
    // 3 RPM refill one request every 20 s.
    expect(limited.headers.get('retry-after')).toBe('20');
    expect(limited.headers.get('anthropic-ratelimit-requests-remaining')).toBe('0');
    expect(limited.headers.get('request-id')).toMatch(/^req_/);

    const otherKey = new Anthropic({ apiKey: 'sk-ant-b', baseURL: sim.url, maxRetries: 0 });
    await expect(otherKey.messages.create(ask('my own bucket'))).resolves.toMatchObject({ type: 'message' });
    expect(sim.stats().models[MODEL]).toMatchObject({ admitted: 4, refused429: 1 });
  });

  it('charges output tokens/min max_tokens up front and refunds the unused part when the call ends', async () => {
    const slow = await startSimulator({
      latencyMs: 500,
      outputTokens: 50,
      models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 100, itpm: 100_000, otpm: 10_000 } } },
    });
    try {
      const sdk = new Anthropic({ apiKey: 'k', baseURL: slow.url, maxRetries: 0 });
      const inFlight = sdk.messages.create(ask('first', 6000));
      while (slow.stats().models[MODEL]?.admitted !== 1) await new Promise((r) => setTimeout(r, 5));

      // 6k reserved of 10k: another 6k does not fit while the first call runs...
      const refused = await failure(sdk.messages.create(ask('second', 6000)));
      expect(refused).toBeInstanceOf(Anthropic.RateLimitError);
      expect((refused as APIError).headers?.get('anthropic-ratelimit-output-tokens-remaining')).toBe('4000');
      expect(slow.stats().admissions[0]).toMatchObject({ output: 6000, done: false });

      // ...and fits once it ended having used 50.
      const first = await inFlight;
      expect(first.usage.output_tokens).toBe(50);
      expect(slow.stats().admissions[0]).toMatchObject({ output: 50, done: true });
      const { response } = await sdk.messages.create(ask('third', 6000)).withResponse();
      expect(response.status).toBe(200);
    } finally {
      await slow.close();
    }
  });

  it("breaks cache writes down by TTL as Anthropic does: a ttl '1h' breakpoint's writes are ephemeral_1h, the rest 5m, plain and streamed", async () => {
    const text = (label: string) => Array.from({ length: 120 }, (_, i) => `${label} rule ${i}: keep the queue moving.`).join('\n');
    const params: Anthropic.MessageCreateParamsNonStreaming = {
      model: MODEL,
      max_tokens: 16,
      system: [
        { type: 'text', text: text('Long-lived'), cache_control: { type: 'ephemeral', ttl: '1h' } },
        { type: 'text', text: text('Short-lived'), cache_control: { type: 'ephemeral' } },
      ],
      messages: [{ role: 'user', content: 'question' }],
    };
    const first = await client.messages.create(params);
    const oneHour = first.usage.cache_creation?.ephemeral_1h_input_tokens ?? 0;
    const fiveMinutes = first.usage.cache_creation?.ephemeral_5m_input_tokens ?? 0;
    expect(oneHour).toBeGreaterThan(1000);
    expect(fiveMinutes).toBeGreaterThan(1000);
    expect(oneHour + fiveMinutes).toBe(first.usage.cache_creation_input_tokens);
    // The 1-hour prefix is read now; a changed 5-minute part is written again, as a 5-minute write.
    const changed = { ...params, system: [params.system![0]!, { type: 'text' as const, text: text('Other'), cache_control: { type: 'ephemeral' as const } }] } as Anthropic.MessageCreateParamsNonStreaming;
    const streamed = await client.messages.stream(changed).finalMessage();
    expect(streamed.usage.cache_read_input_tokens).toBe(oneHour);
    expect(streamed.usage.cache_creation).toEqual({ ephemeral_5m_input_tokens: streamed.usage.cache_creation_input_tokens, ephemeral_1h_input_tokens: 0 });
    expect(streamed.usage.cache_creation_input_tokens).toBeGreaterThan(1000);
  });

  it('draws input tokens/min for cache writes but not for cache reads', async () => {
    const cached = await startSimulator({
      latencyMs: 0,
      outputTokens: 10,
      models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 100, itpm: 3000, otpm: 100_000 } } },
    });
    try {
      const sdk = new Anthropic({ apiKey: 'k', baseURL: cached.url, maxRetries: 0 });
      const manual = Array.from({ length: 200 }, (_, i) => `Rule ${i}: keep the queue moving.`).join('\n');
      const withCache = (question: string): Anthropic.MessageCreateParamsNonStreaming => ({
        model: MODEL,
        max_tokens: 100,
        system: [{ type: 'text', text: manual, cache_control: { type: 'ephemeral' } }],
        messages: [{ role: 'user', content: question }],
      });

      const write = await sdk.messages.create(withCache('first question'));
      const written = write.usage.cache_creation_input_tokens ?? 0;
      expect(written).toBeGreaterThan(1500);
      expect(write.usage.cache_read_input_tokens).toBe(0);

      // The bucket holds < 1500 now: these fit only because reads are not drawn.
      for (const question of ['second question', 'third question']) {
        const read = await sdk.messages.create(withCache(question));
        expect(read.usage.cache_read_input_tokens).toBe(written);
        expect(read.usage.cache_creation_input_tokens).toBe(0);
        expect(read.usage.input_tokens).toBeLessThan(20);
      }
      const uncached = await failure(sdk.messages.create({ ...withCache('no cache'), system: manual }));
      expect(uncached).toBeInstanceOf(Anthropic.RateLimitError);

      const stats = cached.stats().models[MODEL];
      expect(stats?.cacheReadTokens).toBe(2 * written);
      expect(cached.stats().admissions.map((a) => a.input)).toEqual([
        write.usage.input_tokens + written,
        expect.any(Number),
        expect.any(Number),
      ]);
    } finally {
      await cached.close();
    }
  });

  it('streams the same answer as server-sent events the SDK assembles', async () => {
    const plain = await client.messages.create(ask('stream me'));
    const stream = client.messages.stream(ask('stream me'));
    const events: string[] = [];
    stream.on('streamEvent', (event) => events.push(event.type));
    const streamed = await stream.finalMessage();
    expect(streamed.content).toEqual(plain.content);
    expect(streamed.usage.output_tokens).toBe(plain.usage.output_tokens);
    expect(events[0]).toBe('message_start');
    expect(events).toContain('content_block_delta');
    expect(events.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
  });
});

describe('Anthropic fault injection', () => {
  let sim: Simulator;
  let client: Anthropic;
  const HAIKU = 'claude-haiku-4-5';

  beforeAll(async () => {
    sim = await startSimulator({ latencyMs: 0, random: () => 0.5 });
    client = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  it('answers injected 529s with overloaded_error as OverloadedError, for the count given, on that model only', async () => {
    sim.injectFaults({ model: MODEL, status: 529, count: 2 });
    await expect(client.messages.create({ ...ask('hi'), model: HAIKU })).resolves.toMatchObject({ type: 'message' });
    for (let i = 0; i < 2; i++) {
      const error = await failure(client.messages.create(ask('hi')));
      // 1.13 maps 529 to OverloadedError, a subclass of InternalServerError.
      expect(error).toBeInstanceOf(Anthropic.OverloadedError);
      expect(error).toBeInstanceOf(Anthropic.InternalServerError);
      expect((error as APIError).status).toBe(529);
      expect((error as APIError).type).toBe('overloaded_error');
    }
    await expect(client.messages.create(ask('hi'))).resolves.toMatchObject({ type: 'message' });
    expect(sim.stats().models[MODEL]).toMatchObject({ admitted: 1, faultsInjected: { '529': 2 } });
  });

  it('applies a probability with the injected random source', async () => {
    sim.injectFaults([
      { status: 500, probability: 0.4 },
      { status: 503, probability: 0.6 },
    ]);
    const error = await failure(client.messages.create(ask('hi')));
    expect(error).toBeInstanceOf(Anthropic.ServiceUnavailableError);
    expect((error as APIError).status).toBe(503); // random() = 0.5 misses 0.4, hits 0.6
    expect((error as APIError).type).toBe('api_error');
  });

  it('sends a spend-cap 429 without retry-after', async () => {
    sim.injectFaults({ spendCap: true, count: 1 });
    const error = await failure(client.messages.create(ask('hi')));
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect((error as APIError).headers?.get('retry-after')).toBeNull();
  });

  it('makes the SDK throw on a malformed body and on a cut connection, after spending the quota', async () => {
    sim.injectFaults({ malformed: true, count: 1 });
    const malformed = await failure(client.messages.create(ask('hi')));
    // The SDK does not wrap this: a raw SyntaxError from response.json().
    expect(malformed).toBeInstanceOf(SyntaxError);

    sim.injectFaults({ cut: true, count: 1 });
    const cut = await failure(client.messages.create(ask('hi')));
    expect(cut).toBeInstanceOf(Error);
    expect(cut).not.toBeInstanceOf(Anthropic.APIError);

    sim.injectFaults({ cut: true, count: 1 });
    const cutStream = await failure(client.messages.stream(ask('a longer streamed answer', 300)).finalMessage());
    expect(cutStream).toBeInstanceOf(Error);

    const stats = sim.stats().models[MODEL];
    expect(stats).toMatchObject({ admitted: 3, faultsInjected: { malformed: 1, cut: 2 } });
  });
});
