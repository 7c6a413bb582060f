import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Simulator, startSimulator } from '@headroom/simulator';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OpenAIAdapter } from './openai.js';
import type { ProviderCallFailure, ProviderCallResult, ProviderRequest } from './types.js';

const KEY = 'sk-proj-test-0123456789abcdefSECRET';
const MODEL = 'gpt-4.1';
const request = (extra: Record<string, unknown> = {}): ProviderRequest =>
  ({ model: MODEL, max_completion_tokens: 64, messages: [{ role: 'user', content: 'Hello there, how are you?' }], ...extra }) as ProviderRequest;

let sim: Simulator;
let adapter: OpenAIAdapter;
const failures: ProviderCallFailure[] = [];

function expectFailure(result: ProviderCallResult): ProviderCallFailure {
  if (result.ok) throw new Error(`expected a failure, got ${result.status}`);
  failures.push(result);
  return result;
}

beforeAll(async () => {
  sim = await startSimulator({ latencyMs: 0, apiKeys: [KEY] });
  adapter = new OpenAIAdapter({ apiKey: KEY, baseURL: `${sim.url}/v1`, timeoutMs: 10_000 });
});
afterEach(() => sim.clearFaults());
afterAll(async () => {
  await sim.close();
});

describe('OpenAIAdapter against the simulator', () => {
  it('returns the untouched body, mapped usage, rate-limit headers and the request id', async () => {
    const result = await adapter.call({ model: MODEL, request: request() });
    if (!result.ok) throw new Error(result.message);
    const body = result.response as { object: string; model: string; usage: { prompt_tokens: number; completion_tokens: number } };
    expect(result.status).toBe(200);
    expect(body.object).toBe('chat.completion');
    expect(body.model).toBe(MODEL);
    expect(result.usage).toEqual({
      inputTokens: body.usage.prompt_tokens,
      outputTokens: body.usage.completion_tokens,
      cacheReadInputTokens: 0,
      cacheCreationInputTokens: 0,
    });
    expect(result.usage.inputTokens).toBeGreaterThan(0);
    expect(result.headers?.get('x-ratelimit-limit-requests')).toBe('5000');
    expect(result.requestId).toMatch(/^req_/);
  });

  it('calls the model it is given, not the one in the request (fallbacks)', async () => {
    const result = await adapter.call({ model: 'gpt-4.1-mini', request: request() });
    expect(result.ok && (result.response as { model: string }).model).toBe('gpt-4.1-mini');
  });

  it('classifies a 429 with retry-after as rate_limit with the exact wait', async () => {
    sim.injectFaults({ model: MODEL, status: 429, count: 1, retryAfterSeconds: 3 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'rate_limit', status: 429, retryAfterMs: 3000, message: 'requests: Rate limit reached (upstream).' });
    expect(f.requestId).toMatch(/^req_/);
  });

  it('classifies a rate-limit 429 without retry-after as rate_limit, timed by x-ratelimit-reset-requests', async () => {
    sim.injectFaults({ model: MODEL, status: 429, omitRetryAfter: true, resetMs: 1_500, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'rate_limit', status: 429, resetInMs: 1_500 });
    expect(f.retryAfterMs).toBeUndefined();
  });

  it('classifies a billing problem (429 insufficient_quota) as spend_cap', async () => {
    sim.injectFaults({ model: MODEL, billing: true, count: 1 });
    expect(expectFailure(await adapter.call({ model: MODEL, request: request() }))).toMatchObject({ kind: 'spend_cap', status: 429 });
  });

  it('classifies insufficient_quota (429, no retry-after) as spend_cap', async () => {
    sim.injectFaults({ model: MODEL, spendCap: true, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'spend_cap', status: 429, message: 'insufficient_quota: You exceeded your current quota, please check your plan and billing details.' });
    expect(f.retryAfterMs).toBeUndefined();
  });

  it.each([
    [529, 'overloaded'],
    [500, 'server'],
    [502, 'server'],
    [503, 'server'],
  ] as const)('classifies %i as %s', async (status, kind) => {
    sim.injectFaults({ model: MODEL, status, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind, status });
    expect(f.message).toMatch(/^server_error: /);
  });

  it('classifies a malformed 200 as bad_response and keeps its headers', async () => {
    sim.injectFaults({ model: MODEL, malformed: true, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'bad_response', status: 200 });
    expect(f.headers?.get('x-ratelimit-remaining-tokens')).toMatch(/^\d+$/);
  });

  it('classifies a connection cut mid-body as network, with no status but the head\'s headers', async () => {
    sim.injectFaults({ model: MODEL, cut: true, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f.kind).toBe('network');
    expect(f.message).toMatch(/terminated/);
    expect(f.status).toBeNull();
    expect(f.headers?.get('x-ratelimit-remaining-tokens')).toMatch(/^\d+$/);
  });

  it('classifies a 400 as invalid_request with the provider message', async () => {
    const f = expectFailure(await adapter.call({ model: MODEL, request: request({ max_completion_tokens: 100_000 }) }));
    expect(f).toMatchObject({
      kind: 'invalid_request',
      status: 400,
      message: 'invalid_request_error: max_completion_tokens is too large: 100000. This model supports at most 32768 completion tokens, whereas you provided 100000.',
    });
    // The body as sent, param and code included, for the client.
    expect(f.providerError).toEqual({
      provider: 'openai',
      body: {
        error: {
          message: 'max_completion_tokens is too large: 100000. This model supports at most 32768 completion tokens, whereas you provided 100000.',
          type: 'invalid_request_error',
          param: 'max_completion_tokens',
          code: 'invalid_value',
        },
      },
    });
  });

  it('classifies an unknown model as not_found', async () => {
    const f = expectFailure(await adapter.call({ model: 'gpt-nope', request: request() }));
    expect(f).toMatchObject({ kind: 'not_found', status: 404 });
    expect(f.message).toContain('The model `gpt-nope` does not exist');
  });

  it('classifies a wrong key as auth', async () => {
    const wrongKey = 'sk-proj-wrong-9876543210fedcbaSECRET';
    const wrong = new OpenAIAdapter({ apiKey: wrongKey, baseURL: `${sim.url}/v1`, timeoutMs: 10_000 });
    const f = expectFailure(await wrong.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'auth', status: 401 });
    expect(f.message).toMatch(/^invalid_request_error: Incorrect API key provided/);
    expect(JSON.stringify(f)).not.toContain(wrongKey);
  });

  it('maps cached_tokens into cacheReadInputTokens, leaving inputTokens as prompt_tokens', async () => {
    const server: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req_stub' });
      res.end(
        JSON.stringify({
          id: 'chatcmpl-1',
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 2000, completion_tokens: 5, total_tokens: 2005, prompt_tokens_details: { cached_tokens: 1536 } },
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const stubbed = new OpenAIAdapter({ apiKey: KEY, baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, timeoutMs: 10_000 });
      const result = await stubbed.call({ model: MODEL, request: request() });
      expect(result.ok && result.usage).toEqual({ inputTokens: 2000, outputTokens: 5, cacheReadInputTokens: 1536, cacheCreationInputTokens: 0 });
      expect(result.ok && result.requestId).toBe('req_stub');
    } finally {
      server.close();
    }
  });

  it('never puts the API key in any failure', () => {
    expect(failures.length).toBeGreaterThanOrEqual(11);
    for (const f of failures) {
      const { headers: _headers, ...rest } = f;
      expect(JSON.stringify(rest)).not.toContain(KEY);
      expect(JSON.stringify(rest)).not.toContain('SECRET');
    }
  });
});
