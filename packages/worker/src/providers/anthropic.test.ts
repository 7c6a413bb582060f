import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Simulator, startSimulator } from '@headroom/simulator';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicAdapter } from './anthropic.js';
import type { ProviderCallFailure, ProviderCallResult, ProviderRequest } from './types.js';

const KEY = 'sk-ant-test-0123456789abcdefSECRET';
const MODEL = 'claude-sonnet-4-6';
const request = (extra: Record<string, unknown> = {}): ProviderRequest =>
  ({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'Hello there, how are you?' }], ...extra }) as ProviderRequest;

let sim: Simulator;
let adapter: AnthropicAdapter;
const failures: ProviderCallFailure[] = [];

function expectFailure(result: ProviderCallResult): ProviderCallFailure {
  if (result.ok) throw new Error(`expected a failure, got ${result.status}`);
  failures.push(result);
  return result;
}

/** A one-route HTTP server for answers the simulator never gives. */
async function stub(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

beforeAll(async () => {
  sim = await startSimulator({ latencyMs: 0, apiKeys: [KEY] });
  adapter = new AnthropicAdapter({ apiKey: KEY, baseURL: sim.url, timeoutMs: 10_000 });
});
afterEach(() => sim.clearFaults());
afterAll(async () => {
  await sim.close();
});

describe('AnthropicAdapter against the simulator', () => {
  it('returns the untouched body, mapped usage, rate-limit headers and the request id', async () => {
    const result = await adapter.call({ model: MODEL, request: request() });
    if (!result.ok) throw new Error(result.message);
    const body = result.response as { model: string; usage: Record<string, number> };
    expect(result.status).toBe(200);
    expect(body.model).toBe(MODEL);
    expect(result.usage).toEqual({
      inputTokens: body.usage.input_tokens,
      outputTokens: body.usage.output_tokens,
      cacheReadInputTokens: body.usage.cache_read_input_tokens,
      cacheCreationInputTokens: body.usage.cache_creation_input_tokens,
      cacheCreation1hInputTokens: 0,
    });
    expect(result.usage.inputTokens).toBeGreaterThan(0);
    expect(result.headers?.get('anthropic-ratelimit-requests-limit')).toBe('1000');
    expect(result.requestId).toMatch(/^req_/);
    expect(sim.stats().admissions.at(-1)?.model).toBe(MODEL);
  });

  it('calls the model it is given, not the one in the request (fallbacks)', async () => {
    const result = await adapter.call({ model: 'claude-haiku-4-5', request: request() });
    expect(result.ok && (result.response as { model: string }).model).toBe('claude-haiku-4-5');
  });

  it('sends a long non-streaming request the SDK would refuse locally without a timeout', async () => {
    const result = await adapter.call({ model: MODEL, request: request({ max_tokens: 60_000 }) });
    expect(result.ok).toBe(true);
  });

  it('maps cache reads and writes from a cached prompt', async () => {
    const system = [{ type: 'text', text: 'You are a careful assistant. '.repeat(300), cache_control: { type: 'ephemeral' } }];
    const first = await adapter.call({ model: MODEL, request: request({ system }) });
    const second = await adapter.call({ model: MODEL, request: request({ system }) });
    if (!first.ok || !second.ok) throw new Error('cached calls failed');
    expect(first.usage.cacheCreationInputTokens).toBeGreaterThan(1000);
    expect(second.usage.cacheReadInputTokens).toBe(first.usage.cacheCreationInputTokens);
  });

  it("keeps the 1-hour cache writes apart (usage.cache_creation), which cost more than 5-minute ones", async () => {
    const system = [
      { type: 'text', text: 'Kept for an hour. '.repeat(300), cache_control: { type: 'ephemeral', ttl: '1h' } },
      { type: 'text', text: 'Kept for five minutes. '.repeat(300), cache_control: { type: 'ephemeral' } },
    ];
    const result = await adapter.call({ model: MODEL, request: request({ system }) });
    if (!result.ok) throw new Error(result.message);
    const written = (result.response as { usage: { cache_creation: { ephemeral_1h_input_tokens: number } } }).usage.cache_creation;
    expect(written.ephemeral_1h_input_tokens).toBeGreaterThan(1000);
    expect(result.usage.cacheCreation1hInputTokens).toBe(written.ephemeral_1h_input_tokens);
    expect(result.usage.cacheCreationInputTokens).toBeGreaterThan(written.ephemeral_1h_input_tokens);
  });

  it('classifies a 429 with retry-after as rate_limit with the exact wait', async () => {
    sim.injectFaults({ model: MODEL, status: 429, count: 1, retryAfterSeconds: 7 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'rate_limit', status: 429, retryAfterMs: 7000, message: 'rate_limit_error: Rate limited by upstream traffic.' });
    expect(f.requestId).toMatch(/^req_/);
    expect(f.headers?.get('retry-after')).toBe('7');
  });

  it('classifies a real limit refusal (the bucket ran dry) as rate_limit', async () => {
    sim.setLimits('claude-opus-4-6', { rpm: 1 });
    try {
      const opus = request({ model: 'claude-opus-4-6' });
      expect((await adapter.call({ model: 'claude-opus-4-6', request: opus })).ok).toBe(true);
      const f = expectFailure(await adapter.call({ model: 'claude-opus-4-6', request: opus }));
      expect(f.kind).toBe('rate_limit');
      expect(f.retryAfterMs).toBeGreaterThanOrEqual(1000);
      expect(f.retryAfterMs! % 1000).toBe(0);
    } finally {
      sim.setLimits('claude-opus-4-6', { rpm: 1000 });
    }
  });

  it('classifies a rate-limit 429 without retry-after as rate_limit, timed by its reset headers', async () => {
    sim.injectFaults({ model: MODEL, status: 429, omitRetryAfter: true, resetMs: 4_000, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'rate_limit', status: 429, message: 'rate_limit_error: Rate limited by upstream traffic.' });
    expect(f.retryAfterMs).toBeUndefined();
    // The reset is sent at whole seconds, rounded up, and read against the answer's Date header.
    expect(f.resetInMs).toBeGreaterThanOrEqual(3_000);
    expect(f.resetInMs).toBeLessThanOrEqual(6_000);
  });

  it('classifies a 402 billing_error as spend_cap', async () => {
    sim.injectFaults({ model: MODEL, billing: true, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'spend_cap', status: 402, message: expect.stringContaining('billing_error: Your credit balance is too low') });
  });

  it('classifies the spend limit (429, details.error_code enforced_spend_limit_reached) as spend_cap', async () => {
    sim.injectFaults({ model: MODEL, spendCap: true, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f.kind).toBe('spend_cap');
    expect(f.status).toBe(429);
    expect(f.retryAfterMs).toBeUndefined();
    expect(f.message).toContain('usage limits');
    // The body as sent, for the client: its error_code is what the SDK picks its error class by.
    expect(f.providerError).toEqual({
      provider: 'anthropic',
      body: {
        type: 'error',
        error: { type: 'rate_limit_error', message: expect.stringContaining('usage limits'), details: { error_code: 'enforced_spend_limit_reached' } },
        // Anthropic repeats its request-id header in the error body.
        request_id: f.requestId,
      },
    });
  });

  it.each([
    [529, 'overloaded', 'overloaded_error: Overloaded'],
    [500, 'server', 'api_error: Internal server error'],
    [502, 'server', 'api_error: Internal server error'],
    [503, 'server', 'api_error: Internal server error'],
  ] as const)('classifies %i as %s', async (status, kind, message) => {
    sim.injectFaults({ model: MODEL, status, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind, status, message });
    expect(f.requestId).toMatch(/^req_/);
  });

  it('classifies a malformed 200 as bad_response and keeps its headers', async () => {
    sim.injectFaults({ model: MODEL, malformed: true, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f.kind).toBe('bad_response');
    expect(f.status).toBe(200);
    expect(f.message).toMatch(/not valid JSON/);
    // The call was admitted and paid for: the bucket sync still needs these.
    expect(f.headers?.get('anthropic-ratelimit-requests-remaining')).toMatch(/^\d+$/);
    expect(f.requestId).toMatch(/^req_/);
  });

  it('classifies a connection cut mid-body as network, with no status but the head\'s headers', async () => {
    sim.injectFaults({ model: MODEL, cut: true, count: 1 });
    const f = expectFailure(await adapter.call({ model: MODEL, request: request() }));
    expect(f.kind).toBe('network');
    expect(f.message).toMatch(/mid-response.*terminated/);
    // The head's 200 was no answer: code branching on a failure's status must not read one.
    expect(f.status).toBeNull();
    expect(f.headers?.get('anthropic-ratelimit-requests-remaining')).toMatch(/^\d+$/);
  });

  it('classifies a 400 as invalid_request with the provider message', async () => {
    const f = expectFailure(await adapter.call({ model: MODEL, request: request({ max_tokens: 100_000 }) }));
    expect(f).toMatchObject({
      kind: 'invalid_request',
      status: 400,
      message: 'invalid_request_error: max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-6',
    });
  });

  it('classifies an unknown model as not_found', async () => {
    const f = expectFailure(await adapter.call({ model: 'claude-nope', request: request() }));
    expect(f).toMatchObject({ kind: 'not_found', status: 404, message: 'not_found_error: model: claude-nope' });
  });

  it('classifies a wrong key as auth', async () => {
    const wrongKey = 'sk-ant-wrong-9876543210fedcbaSECRET';
    const wrong = new AnthropicAdapter({ apiKey: wrongKey, baseURL: sim.url, timeoutMs: 10_000 });
    const f = expectFailure(await wrong.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'auth', status: 401, message: 'authentication_error: invalid x-api-key' });
    expect(JSON.stringify(f)).not.toContain(wrongKey);
  });

  it('classifies a refused connection as network with no status', async () => {
    const { server, url } = await stub(() => {});
    await new Promise((resolve) => server.close(resolve));
    const dead = new AnthropicAdapter({ apiKey: KEY, baseURL: url, timeoutMs: 10_000 });
    const f = expectFailure(await dead.call({ model: MODEL, request: request() }));
    expect(f).toMatchObject({ kind: 'network', status: null });
    expect(f.message).toMatch(/^connection error: .*ECONNREFUSED/);
  });

  it('times out a body that stalls after the head, and a head that never comes', async () => {
    let calls = 0;
    const { server, url } = await stub((_req, res) => {
      calls += 1;
      if (calls > 1) return; // never answers
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"type":"message",');
    });
    try {
      const slow = new AnthropicAdapter({ apiKey: KEY, baseURL: url, timeoutMs: 1_000 });
      const body = expectFailure(await slow.call({ model: MODEL, request: request() }));
      // The head said 200, but the call never ended: no status, as for a head that never came.
      expect(body).toMatchObject({ kind: 'network', status: null, message: 'request timed out after 1000 ms' });
      const head = expectFailure(await slow.call({ model: MODEL, request: request() }));
      expect(head).toMatchObject({ kind: 'network', status: null, message: 'request timed out after 1000 ms' });
      expect(calls).toBe(2);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('reports a call aborted by the worker as network, at once', async () => {
    const { server, url } = await stub(() => {});
    try {
      const hung = new AnthropicAdapter({ apiKey: KEY, baseURL: url, timeoutMs: 10_000 });
      const controller = new AbortController();
      const started = Date.now();
      const pending = hung.call({ model: MODEL, request: request(), signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      const f = expectFailure(await pending);
      expect(f).toMatchObject({ kind: 'network', status: null, message: 'request aborted by the worker' });
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('classifies a 200 whose JSON lacks usage as bad_response', async () => {
    const { server, url } = await stub((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_stub' });
      res.end(JSON.stringify({ type: 'message', content: [] }));
    });
    try {
      const odd = new AnthropicAdapter({ apiKey: KEY, baseURL: url, timeoutMs: 10_000 });
      const f = expectFailure(await odd.call({ model: MODEL, request: request() }));
      expect(f).toMatchObject({ kind: 'bad_response', status: 200, requestId: 'req_stub' });
      expect(f.message).toContain('usage');
    } finally {
      server.close();
    }
  });

  it('scrubs the key from a provider message that echoes it', async () => {
    const { server, url } = await stub((req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: `bad credentials header: ${req.headers.authorization}` } }));
    });
    try {
      const echo = new AnthropicAdapter({ apiKey: KEY, baseURL: url, timeoutMs: 10_000 });
      const f = expectFailure(await echo.call({ model: MODEL, request: request() }));
      expect(f.kind).toBe('invalid_request');
      expect(f.message).toBe('invalid_request_error: bad credentials header: Bearer [redacted]');
      expect(f.providerError?.body).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'bad credentials header: Bearer [redacted]' } });
    } finally {
      server.close();
    }
  });

  it("keeps no error body from an HTML error page: the client gets one rebuilt from the failure", async () => {
    const { server, url } = await stub((_req, res) => {
      res.writeHead(400, { 'content-type': 'text/html' });
      res.end('<html><body><h1>400 Bad Request</h1><p>The plain HTTP request was sent to HTTPS port</p></body></html>');
    });
    try {
      const html = new AnthropicAdapter({ apiKey: KEY, baseURL: url, timeoutMs: 10_000 });
      const f = expectFailure(await html.call({ model: MODEL, request: request() }));
      expect(f).toMatchObject({ kind: 'invalid_request', status: 400 });
      expect(f.providerError).toBeUndefined();
    } finally {
      server.close();
    }
  });

  it('never puts the API key in any failure', () => {
    expect(failures.length).toBeGreaterThanOrEqual(15);
    for (const f of failures) {
      const { headers: _headers, ...rest } = f;
      expect(JSON.stringify(rest)).not.toContain(KEY);
      expect(JSON.stringify(rest)).not.toContain('SECRET');
    }
  });
});
