import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type FaultsView, type Simulator, startSimulator } from './index.js';

const CLAUDE = 'claude-sonnet-4-6';
const GPT = 'gpt-4o-mini';
const T0 = Date.UTC(2026, 7, 15, 12, 0, 0); // 2026-08-15T12:00:00Z

interface ApiFailure {
  status: number;
  headers: Headers;
  type: string | null;
  code?: string | null;
  errorCode?: string | null;
  message: string;
}

async function failure(promise: Promise<unknown>): Promise<ApiFailure & Error> {
  try {
    await promise;
  } catch (error) {
    return error as ApiFailure & Error;
  }
  throw new Error('expected the call to fail');
}

describe('injected faults as each provider sends them, through the official SDKs', () => {
  let sim: Simulator;
  let now = T0;
  let draws: number[] = [];
  let claude: Anthropic;
  let gpt: OpenAI;
  const askClaude = () => claude.messages.create({ model: CLAUDE, max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] });
  const askGpt = () => gpt.chat.completions.create({ model: GPT, max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] });

  beforeAll(async () => {
    // The clock and the random source are injected, so windows and probabilities are exact.
    sim = await startSimulator({ latencyMs: 0, outputTokens: 5, clock: () => now, random: () => draws.shift() ?? 0.99 });
    claude = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
    gpt = new OpenAI({ apiKey: 'k', baseURL: `${sim.url}/v1`, maxRetries: 0 });
  });
  afterEach(() => {
    sim.reset();
    now = T0;
    draws = [];
  });
  afterAll(() => sim.close());

  it('sends Anthropic’s monthly spend cap: 429 enforced_spend_limit_reached, no retry-after, access back next month', async () => {
    sim.injectFaults({ model: CLAUDE, spendCap: true, count: 1 });
    const error = await failure(askClaude());
    expect(error).toBeInstanceOf(Anthropic.EnforcedSpendLimitReachedError);
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect(error).toMatchObject({ status: 429, type: 'rate_limit_error', errorCode: 'enforced_spend_limit_reached' });
    expect(error.message).toContain('You have reached your API usage limits');
    expect(error.message).toContain('You will regain access on 2026-09-01 at 00:00 UTC.');
    expect(error.headers.get('retry-after')).toBeNull();
    expect(sim.stats().models[CLAUDE]?.faultsInjected).toEqual({ '429-spend-cap': 1 });
  });

  it('sends a billing problem as Anthropic’s 402 billing_error and OpenAI’s 429 insufficient_quota', async () => {
    sim.injectFaults([
      { model: CLAUDE, billing: true, count: 1 },
      { model: GPT, billing: true, count: 1 },
    ]);
    const anthropic = await failure(askClaude());
    expect(anthropic).toBeInstanceOf(Anthropic.PaymentRequiredError);
    expect(anthropic).toMatchObject({ status: 402, type: 'billing_error' });

    const openai = await failure(askGpt());
    expect(openai).toBeInstanceOf(OpenAI.RateLimitError);
    expect(openai).toMatchObject({ status: 429, type: 'insufficient_quota', code: 'insufficient_quota' });
    expect(openai.message).toContain('You exceeded your current quota, please check your plan and billing details.');
    expect(openai.headers.get('retry-after')).toBeNull();
    expect(sim.stats().models[CLAUDE]?.faultsInjected).toEqual({ '402-billing': 1 });
    expect(sim.stats().models[GPT]?.faultsInjected).toEqual({ '429-billing': 1 });
  });

  it('sends a refusal (400, 401, 403, 404, 413) as each provider’s error class and type', async () => {
    const expected = [
      [400, Anthropic.BadRequestError, 'invalid_request_error', OpenAI.BadRequestError, null],
      [401, Anthropic.AuthenticationError, 'authentication_error', OpenAI.AuthenticationError, 'invalid_api_key'],
      [403, Anthropic.PermissionDeniedError, 'permission_error', OpenAI.PermissionDeniedError, 'model_not_found'],
      [404, Anthropic.NotFoundError, 'not_found_error', OpenAI.NotFoundError, 'model_not_found'],
      [413, Anthropic.APIError, 'request_too_large', OpenAI.APIError, 'request_too_large'],
    ] as const;
    for (const [status, anthropicClass, anthropicType, openaiClass, openaiCode] of expected) {
      sim.injectFaults([{ model: CLAUDE, status, count: 1 }, { model: GPT, status, count: 1 }]);
      const anthropic = await failure(askClaude());
      expect(anthropic, String(status)).toBeInstanceOf(anthropicClass);
      expect(anthropic).toMatchObject({ status, type: anthropicType });
      const openai = await failure(askGpt());
      expect(openai, String(status)).toBeInstanceOf(openaiClass);
      expect(openai).toMatchObject({ status, type: 'invalid_request_error', code: openaiCode });
      expect(openai.headers.get('retry-after')).toBeNull();
    }
    expect(sim.stats().models[CLAUDE]?.faultsInjected).toEqual({ '400': 1, '401': 1, '403': 1, '404': 1, '413': 1 });
    expect(() => sim.injectFaults({ status: 418 as never })).toThrow(/fault status must be one of 400, 401, 403, 404, 413, 429/);
  });

  it('sends overload as Anthropic’s 529 overloaded_error and OpenAI’s 503', async () => {
    sim.injectFaults({ overloaded: true, count: 2 });
    const anthropic = await failure(askClaude());
    expect(anthropic).toBeInstanceOf(Anthropic.OverloadedError);
    expect(anthropic).toMatchObject({ status: 529, type: 'overloaded_error' });
    const openai = await failure(askGpt());
    expect(openai).toBeInstanceOf(OpenAI.InternalServerError);
    expect(openai).toMatchObject({ status: 503, type: 'server_error' });
    expect(openai.message).toContain('currently overloaded');
    expect(sim.stats().models[CLAUDE]?.faultsInjected).toEqual({ '529': 1 });
    expect(sim.stats().models[GPT]?.faultsInjected).toEqual({ '503': 1 });
  });

  it('strikes an overload mid-call: streams get their opening events, then the error in the stream; only the request is charged', async () => {
    const remaining = async () => {
      const { response } = await claude.messages.create({ model: CLAUDE, max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
      return { requests: response.headers.get('anthropic-ratelimit-requests-remaining'), input: response.headers.get('anthropic-ratelimit-input-tokens-remaining'), output: response.headers.get('anthropic-ratelimit-output-tokens-remaining') };
    };
    const untouched = await remaining();
    sim.reset();

    sim.injectFaults([
      { model: CLAUDE, overloaded: true, midCall: true, count: 1 },
      { model: GPT, overloaded: true, midCall: true, count: 2 },
    ]);
    // Anthropic: message_start, then `event: error`, which the SDK raises as an APIError without a status.
    const events: string[] = [];
    const stream = await claude.messages.create({ model: CLAUDE, max_tokens: 20, messages: [{ role: 'user', content: 'hi' }], stream: true });
    const anthropic = await failure(
      (async () => {
        for await (const event of stream) events.push(event.type);
      })(),
    );
    expect(events).toEqual(['message_start', 'content_block_start']);
    expect(anthropic).toBeInstanceOf(Anthropic.APIError);
    expect(anthropic).toMatchObject({ status: undefined, error: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } } });
    // The call was given up: its tokens are back, its request is not.
    const after = await remaining();
    expect(after.input).toBe(untouched.input);
    expect(after.output).toBe(untouched.output);
    expect(Number(after.requests)).toBe(Number(untouched.requests) - 1);

    // OpenAI Chat Completions: the role chunk, then an error chunk.
    const chunks: unknown[] = [];
    const chat = await gpt.chat.completions.create({ model: GPT, max_tokens: 20, messages: [{ role: 'user', content: 'hi' }], stream: true });
    const openai = await failure(
      (async () => {
        for await (const chunk of chat) chunks.push(chunk.choices[0]?.delta);
      })(),
    );
    expect(chunks).toEqual([{ role: 'assistant', content: '', refusal: null }]);
    expect(openai).toMatchObject({ status: undefined, type: 'server_error', code: 'server_is_overloaded' });

    // Responses: response.created ... then an `error` event.
    const types: string[] = [];
    const response = await gpt.responses.create({ model: GPT, max_output_tokens: 20, input: 'hi', stream: true });
    const responses = await failure(
      (async () => {
        for await (const event of response) types.push(event.type);
      })(),
    );
    expect(types).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(responses).toMatchObject({ status: undefined, code: 'server_is_overloaded' });

    // A plain call gets the provider's overload status after its latency.
    sim.injectFaults({ overloaded: true, midCall: true, count: 2 });
    expect(await failure(askClaude())).toMatchObject({ status: 529, type: 'overloaded_error' });
    expect(await failure(askGpt())).toMatchObject({ status: 503, type: 'server_error' });
    expect(sim.stats().models[CLAUDE]?.faultsInjected).toEqual({ '529-mid-call': 2 });
    expect(sim.stats().models[GPT]?.faultsInjected).toEqual({ '503-mid-call': 3 });
    expect(() => sim.injectFaults({ status: 500, midCall: true })).toThrow(/midCall is for an overloaded fault/);
  });

  it('sends a rate-limit 429 without retry-after whose reset headers carry the wait', async () => {
    sim.injectFaults([
      { model: CLAUDE, status: 429, omitRetryAfter: true, resetMs: 3000, count: 1 },
      { model: GPT, status: 429, omitRetryAfter: true, resetMs: 250, count: 1 },
    ]);
    const anthropic = await failure(askClaude());
    expect(anthropic).toBeInstanceOf(Anthropic.RateLimitError);
    expect(anthropic).not.toBeInstanceOf(Anthropic.EnforcedSpendLimitReachedError);
    expect(anthropic).toMatchObject({ status: 429, type: 'rate_limit_error', errorCode: null });
    expect(anthropic.headers.get('retry-after')).toBeNull();
    expect(anthropic.headers.get('retry-after-ms')).toBeNull();
    expect(anthropic.headers.get('anthropic-ratelimit-requests-remaining')).toBe('0');
    expect(anthropic.headers.get('anthropic-ratelimit-requests-reset')).toBe('2026-08-15T12:00:03Z');
    expect(anthropic.headers.get('anthropic-ratelimit-input-tokens-reset')).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const openai = await failure(askGpt());
    expect(openai).toBeInstanceOf(OpenAI.RateLimitError);
    expect(openai).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    expect(openai.headers.get('retry-after')).toBeNull();
    expect(openai.headers.get('retry-after-ms')).toBeNull();
    expect(openai.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(openai.headers.get('x-ratelimit-reset-requests')).toBe('250ms');
    expect(openai.headers.get('x-ratelimit-reset-tokens')).toBe('0s');
  });

  it('strikes a fault window over HTTP: 529 to 50% of calls for 40 s, then none', async () => {
    const posted = await fetch(`${sim.url}/_sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: CLAUDE, status: 529, probability: 0.5, durationMs: 40_000 }),
    });
    expect(((await posted.json()) as FaultsView).faults).toEqual([{ model: CLAUDE, status: 529, probability: 0.5, durationMs: 40_000 }]);

    const outcomes: (number | 'ok')[] = [];
    const call = () => askClaude().then(() => 'ok' as const, (e: ApiFailure) => e.status);
    for (const [at, draw] of [[0, 0.25], [10_000, 0.75], [39_999, 0.1], [40_000, 0.1]] as const) {
      now = T0 + at;
      draws.push(draw);
      outcomes.push(await call());
    }
    expect(outcomes).toEqual([529, 'ok', 529, 'ok']);
    expect(sim.faults().faults).toEqual([]);
    expect(sim.stats().models[CLAUDE]).toMatchObject({ admitted: 2, faultsInjected: { '529': 2 } });
  });

  it('holds a window that starts later until its time', async () => {
    sim.injectFaults({ model: GPT, overloaded: true, fromMs: 5000, durationMs: 1000 });
    expect(await askGpt()).toMatchObject({ object: 'chat.completion' });
    now = T0 + 5000;
    expect((await failure(askGpt())).status).toBe(503);
    now = T0 + 6000;
    expect(await askGpt()).toMatchObject({ object: 'chat.completion' });
  });
});
