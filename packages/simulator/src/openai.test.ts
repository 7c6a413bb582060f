import OpenAI, { type APIError } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from './index.js';

const MODEL = 'gpt-4o-mini';
const chat = (content: string, max_tokens = 100) => ({ model: MODEL, max_tokens, messages: [{ role: 'user' as const, content }] });

async function failure(promise: Promise<unknown>): Promise<APIError> {
  try {
    await promise;
  } catch (error) {
    return error as APIError;
  }
  throw new Error('expected the call to fail');
}

const GO_DURATION = /^(\d+h)?(\d+m)?\d+(\.\d+)?s$|^\d+ms$/;

describe('OpenAI Chat Completions through the openai SDK', () => {
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
        'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100, itpm: 10_000, otpm: 10_000 } },
      },
    });
    client = new OpenAI({ apiKey: 'sk-oai', baseURL: `${sim.url}/v1`, maxRetries: 0 });
  });
  afterEach(() => sim.reset());
  afterAll(() => sim.close());

  it('answers with a chat.completion, usage and x-ratelimit headers with Go-style resets', async () => {
    const { data, response } = await client.chat.completions.create(chat('Tell me about lanes.')).withResponse();
    expect(data).toMatchObject({ object: 'chat.completion', model: MODEL });
    expect(data.id).toMatch(/^chatcmpl-/);
    expect(data.choices[0]).toMatchObject({ index: 0, finish_reason: 'stop', message: { role: 'assistant' } });
    expect(data.choices[0]?.message.content?.length).toBeGreaterThan(0);
    const usage = data.usage;
    expect(usage?.completion_tokens).toBe(50);
    expect(usage?.total_tokens).toBe((usage?.prompt_tokens ?? 0) + 50);
    expect(response.headers.get('x-request-id')).toMatch(/^req_/);
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('100');
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('1000');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('99');
    // Charged prompt + max_tokens, corrected to prompt + actual output at the end.
    expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBe(1000 - (usage?.total_tokens ?? 0));
    expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(GO_DURATION);
    expect(response.headers.get('x-ratelimit-reset-tokens')).toMatch(GO_DURATION);
  });

  it('charges max_tokens toward tokens/min up front: 429 type tokens when the reservation does not fit', async () => {
    const first = await client.chat.completions.create(chat('first', 900));
    expect(first.usage?.completion_tokens).toBe(50); // 1000 - ~60 left
    const error = await failure(client.chat.completions.create(chat('second', 950)));
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error.status).toBe(429);
    expect(error.type).toBe('tokens');
    expect(error.code).toBe('rate_limit_exceeded');
    expect(error.message).toMatch(/tokens per min \(TPM\): Limit 1000/);
    const retryAfter = Number(error.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(2);
    expect(error.headers?.get('x-ratelimit-remaining-requests')).toBe('99');
    expect(error.headers?.get('x-ratelimit-reset-tokens')).toMatch(GO_DURATION);
    await expect(client.chat.completions.create(chat('small', 100))).resolves.toMatchObject({ object: 'chat.completion' });
  });

  it('refuses the request past RPM with type requests', async () => {
    const gpt41 = (content: string) => ({ ...chat(content), model: 'gpt-4.1' });
    await client.chat.completions.create(gpt41('one'));
    await client.chat.completions.create(gpt41('two'));
    const error = await failure(client.chat.completions.create(gpt41('three')));
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error.type).toBe('requests');
    expect(error.headers?.get('retry-after')).toBe('30');
    expect(error.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
  });

  it('refuses a request larger than the whole TPM limit without retry-after', async () => {
    const error = await failure(client.chat.completions.create(chat('huge', 5000)));
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error.message).toContain('Request too large');
    expect(error.headers?.get('retry-after')).toBeNull();
  });

  it('maps bad bodies, unknown models and bad keys to the SDK errors with param and code', async () => {
    const empty = await failure(client.chat.completions.create({ model: MODEL, messages: [] }));
    expect(empty).toBeInstanceOf(OpenAI.BadRequestError);
    expect(empty.param).toBe('messages');
    expect(empty.code).toBe('empty_array');

    const zero = await failure(client.chat.completions.create(chat('hi', 0)));
    expect(zero.code).toBe('integer_below_min_value');
    expect(zero.param).toBe('max_tokens');

    for (const model of ['gpt-nonexistent', 'claude-haiku-4-5']) {
      const missing = await failure(client.chat.completions.create({ ...chat('hi'), model }));
      expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
      expect(missing.code).toBe('model_not_found');
    }

    const stranger = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${sim.url}/v1`, maxRetries: 0 });
    const denied = await failure(stranger.chat.completions.create(chat('hi')));
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(denied.code).toBe('invalid_api_key');
  });

  it('answers injected faults in OpenAI shape', async () => {
    sim.injectFaults({ model: MODEL, status: 503, count: 1 });
    const unavailable = await failure(client.chat.completions.create(chat('hi')));
    expect(unavailable).toBeInstanceOf(OpenAI.InternalServerError);
    expect(unavailable.status).toBe(503);
    expect(unavailable.type).toBe('server_error');

    sim.injectFaults({ model: MODEL, spendCap: true, count: 1 });
    const broke = await failure(client.chat.completions.create(chat('hi')));
    expect(broke.code).toBe('insufficient_quota');
    expect(broke.headers?.get('retry-after')).toBeNull();

    sim.injectFaults({ model: MODEL, malformed: true, count: 1 });
    expect(await failure(client.chat.completions.create(chat('hi')))).toBeInstanceOf(SyntaxError);

    sim.injectFaults({ model: MODEL, cut: true, count: 1 });
    const cut = await failure(client.chat.completions.create(chat('hi')));
    expect(cut).toBeInstanceOf(Error);
    expect(cut).not.toBeInstanceOf(OpenAI.APIError);

    expect(sim.stats().models[MODEL]?.faultsInjected).toEqual({ '503': 1, '429-spend-cap': 1, malformed: 1, cut: 1 });
  });

  it('reports a prompt prefix seen recently as cached_tokens, and still draws it from tokens/min', async () => {
    // A frozen clock: the bucket never refills, so what is left is exactly what was drawn.
    const cached = await startSimulator({ latencyMs: 0, outputTokens: 10, clock: () => Date.UTC(2026, 0, 1), models: { [MODEL]: { provider: 'openai', limits: { rpm: 100, tpm: 100_000 } } } });
    try {
      const sdk = new OpenAI({ apiKey: 'k', baseURL: `${cached.url}/v1`, maxRetries: 0 });
      const manual = Array.from({ length: 200 }, (_, i) => `Rule ${i}: keep the queue moving.`).join('\n');
      const ask = (question: string) => ({ model: MODEL, max_tokens: 100, messages: [{ role: 'system' as const, content: manual }, { role: 'user' as const, content: question }] });

      const first = await sdk.chat.completions.create(ask('first question'));
      expect(first.usage?.prompt_tokens).toBeGreaterThan(1500);
      expect(first.usage?.prompt_tokens_details?.cached_tokens).toBe(0);

      const { data: second, response } = await sdk.chat.completions.create(ask('second question')).withResponse();
      const hit = second.usage?.prompt_tokens_details?.cached_tokens ?? 0;
      expect(hit).toBeGreaterThanOrEqual(1024);
      expect(hit % 128).toBe(0);
      expect(hit).toBeLessThanOrEqual(second.usage?.prompt_tokens ?? 0);
      // prompt_tokens still counts the cached part, and so does TPM.
      expect(second.usage?.prompt_tokens).toBe(first.usage?.prompt_tokens);
      expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBe(100_000 - (first.usage?.total_tokens ?? 0) - (second.usage?.total_tokens ?? 0));

      const stream = await sdk.chat.completions.create({ ...ask('third question'), stream: true, stream_options: { include_usage: true } });
      let streamedUsage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) if (chunk.usage) streamedUsage = chunk.usage;
      expect(streamedUsage?.prompt_tokens_details?.cached_tokens).toBe(hit);

      const short = await sdk.chat.completions.create(chat('short'));
      await sdk.chat.completions.create(chat('short'));
      expect(short.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
      expect((await sdk.chat.completions.create(chat('short'))).usage?.prompt_tokens_details?.cached_tokens).toBe(0);

      const stats = cached.stats();
      expect(stats.models[MODEL]?.cacheReadTokens).toBe(2 * hit);
      expect(stats.admissions[1]).toMatchObject({ input: second.usage?.prompt_tokens, cacheRead: hit });
    } finally {
      await cached.close();
    }
  });

  it('answers n choices, each its own answer, all billed and all reserved up front', async () => {
    const one = await client.chat.completions.create(chat('three ways to say it', 20));
    const three = await client.chat.completions.create({ ...chat('three ways to say it', 20), n: 3 });
    expect(three.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    // The first choice is the answer without n; the others are answers of their own.
    expect(three.choices[0]?.message.content).toBe(one.choices[0]?.message.content);
    expect(new Set(three.choices.map((c) => c.message.content)).size).toBe(3);
    const alone = await Promise.all([1, 2].map(async (i) => (await client.chat.completions.create({ ...chat(three.choices[i]!.message.content!, 20) })).usage!.prompt_tokens));
    const sent = (await client.chat.completions.create(chat('', 20))).usage!.prompt_tokens;
    // Each choice's tokens, counted as a prompt of its own less an empty prompt's overhead.
    const tokensOf = [one.usage!.completion_tokens, ...alone.map((t) => t - sent)];
    expect(three.usage?.completion_tokens).toBe(tokensOf.reduce((a, b) => a + b, 0));
    // TPM 1000: a prompt and 3 x 400 is more than the whole minute's tokens; a prompt and 400 fits.
    sim.reset();
    const refused = await failure(client.chat.completions.create({ ...chat('too many', 400), n: 3 }));
    expect(refused.status).toBe(429);
    expect(refused.message).toMatch(/Request too large .* Requested 12\d\d\b/);
    await expect(client.chat.completions.create(chat('too many', 400))).resolves.toBeDefined();
  });

  it('refuses an n that is not an integer from 1 to 128, naming it', async () => {
    for (const [n, code] of [[0, 'integer_below_min_value'], [129, 'integer_above_max_value'], [1.5, 'invalid_type'], ['2', 'invalid_type']] as const) {
      const err = await failure(client.chat.completions.create({ ...chat('n'), n } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming));
      expect(err.status, String(n)).toBe(400);
      expect((err as APIError & { param?: string }).param).toBe('n');
      expect(err.code, String(n)).toBe(code);
    }
  });

  it('streams n choices as chunks named by their index, each put back together as its plain answer', async () => {
    const plain = await client.chat.completions.create({ ...chat('two at once', 30), n: 2 });
    const indexes = new Set<number>();
    const stream = await client.chat.completions.create({ ...chat('two at once', 30), n: 2, stream: true, stream_options: { include_usage: true } });
    const texts = ['', ''];
    const finishes: (string | null)[] = [null, null];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      expect(chunk.choices.length).toBeLessThanOrEqual(1);
      for (const c of chunk.choices) {
        indexes.add(c.index);
        texts[c.index] += c.delta.content ?? '';
        finishes[c.index] = c.finish_reason ?? finishes[c.index]!;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect([...indexes].sort()).toEqual([0, 1]);
    expect(texts).toEqual(plain.choices.map((c) => c.message.content));
    expect(finishes).toEqual(plain.choices.map((c) => c.finish_reason));
    expect(usage?.completion_tokens).toBe(plain.usage?.completion_tokens);
    // The SDK's stream helper assembles the same choices.
    const helper = client.chat.completions.stream({ ...chat('two at once', 30), n: 2 });
    const final = await helper.finalChatCompletion();
    expect(final.choices.map((c) => c.message.content)).toEqual(plain.choices.map((c) => c.message.content));
  });

  it('streams the same answer as chunks, with usage when asked', async () => {
    const plain = await client.chat.completions.create(chat('stream this'));
    const stream = await client.chat.completions.create({ ...chat('stream this'), stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(plain.choices[0]?.message.content);
    expect(finish).toBe('stop');
    expect(usage?.completion_tokens).toBe(plain.usage?.completion_tokens);
  });
});
