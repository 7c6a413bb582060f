import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { ANTHROPIC_SDK_ERRORS, AnthropicAdapter, AnthropicMessageBody, anthropicUsage } from './anthropic.js';
import { createHttpFetch } from './http-fetch.js';
import { OpenAIAdapter } from './openai.js';
import { classifyError, runSdkCall, type SdkCallSpec } from './sdk-call.js';
import type { ProviderCallResult, ProviderRequest } from './types.js';

const KEY = 'sk-ant-test-0123456789abcdefSECRET';
const MODEL = 'claude-sonnet-4-6';
const ask = { model: MODEL, max_tokens: 64, messages: [{ role: 'user' as const, content: 'Hello' }] };
const MESSAGE = { id: 'msg_1', type: 'message', role: 'assistant', model: MODEL, content: [{ type: 'text', text: 'Hi' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } };

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function stub(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const spec = (timeoutMs: number): SdkCallSpec<AnthropicMessageBody> => ({
  provider: 'anthropic',
  apiKey: KEY,
  timeoutMs,
  errors: ANTHROPIC_SDK_ERRORS,
  requestIdHeader: 'request-id',
  schema: AnthropicMessageBody,
  usageOf: anthropicUsage,
});

/** The same plain call, as the worker makes it, over the built-in fetch and over ours. */
async function bothWays(baseURL: string, opts: { timeoutMs?: number; abortAfterMs?: number } = {}): Promise<[ProviderCallResult, ProviderCallResult]> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const call = async (fetch: typeof globalThis.fetch) => {
    const client = new Anthropic({ apiKey: KEY, baseURL, maxRetries: 0, timeout: timeoutMs, fetch });
    const caller = new AbortController();
    if (opts.abortAfterMs !== undefined) setTimeout(() => caller.abort(), opts.abortAfterMs);
    return runSdkCall(spec(timeoutMs), caller.signal, ({ timeout, signal }) => client.messages.create(ask, { timeout, signal }).asResponse());
  };
  return [await call(globalThis.fetch), await call(createHttpFetch())];
}

/** A server whose head never comes, and one whose body stalls after its head. */
async function silentServers(): Promise<string[]> {
  const never = await stub(() => {});
  const stalls = await stub((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '500' });
    res.write('{"type":');
  });
  return [never, stalls];
}

/** What the classification keeps of a result, the message's socket detail aside. */
const shape = (r: ProviderCallResult) =>
  r.ok ? { ok: true, status: r.status, body: r.response } : { ok: false, kind: r.kind, status: r.status, message: r.message.replace(/: [^:]*$/, ''), head: r.headers?.get('x-head') ?? null };

describe('createHttpFetch: the failures classify as over the built-in fetch', () => {
  it('an answer: same status, body and headers', async () => {
    const url = await stub((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_1' });
      res.end(JSON.stringify(MESSAGE));
    });
    const [builtIn, ours] = await bothWays(url);
    expect(ours).toMatchObject({ ok: true, status: 200, requestId: 'req_1' });
    expect(shape(ours)).toEqual(shape(builtIn));
  });

  it('a refused connection: network, no status, the socket error named', async () => {
    const url = await stub(() => {});
    const closed = servers.pop()!;
    await new Promise((r) => closed.close(r));
    const [builtIn, ours] = await bothWays(url);
    expect(ours).toMatchObject({ ok: false, kind: 'network', status: null });
    expect(!ours.ok && ours.message).toMatch(/^connection error: .*ECONNREFUSED/);
    expect(shape(ours)).toEqual(shape(builtIn));
  });

  it("a connection cut mid-body: network ('terminated'), no status, the head's headers kept", async () => {
    const url = await stub((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '500', 'x-head': 'kept' });
      res.write('{"type":"message",');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const [builtIn, ours] = await bothWays(url);
    expect(ours).toMatchObject({ ok: false, kind: 'network', status: null });
    expect(!ours.ok && ours.message).toMatch(/^connection closed mid-response: terminated/);
    expect(shape(ours)).toEqual(shape(builtIn));
    expect(shape(ours)).toMatchObject({ head: 'kept' });
  });

  it('a head that never comes, and a body that stalls after it: timed out', async () => {
    for (const url of await silentServers()) {
      const [builtIn, ours] = await bothWays(url, { timeoutMs: 200 });
      expect(ours).toMatchObject({ ok: false, kind: 'network', status: null, message: 'request timed out after 200 ms' });
      expect(shape(ours)).toEqual(shape(builtIn));
    }
  });

  it('aborted by the worker before the head and mid-body', async () => {
    for (const url of await silentServers()) {
      const [builtIn, ours] = await bothWays(url, { abortAfterMs: 50 });
      expect(ours).toMatchObject({ ok: false, kind: 'network', status: null, message: 'request aborted by the worker' });
      expect(shape(ours)).toEqual(shape(builtIn));
    }
  });

  it('a malformed 200 and an error status: the same failure, status and headers', async () => {
    const malformed = await stub((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-head': 'kept' });
      res.end('{"type":"mess');
    });
    const overloaded = await stub((_req, res) => {
      res.writeHead(529, { 'content-type': 'application/json', 'retry-after': '2', 'x-head': 'kept' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }));
    });
    for (const url of [malformed, overloaded]) {
      const [builtIn, ours] = await bothWays(url);
      expect(ours.ok).toBe(false);
      expect(shape(ours)).toEqual(shape(builtIn));
    }
  });

  it('a body sent compressed though not asked for is decoded', async () => {
    const url = await stub((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(gzipSync(JSON.stringify(MESSAGE)));
    });
    const [builtIn, ours] = await bothWays(url);
    expect(ours).toMatchObject({ ok: true, status: 200, response: MESSAGE });
    expect(shape(ours)).toEqual(shape(builtIn));
  });

  it('a stream cut after its first events fails the same way, the events before it read', async () => {
    const url = await stub((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { ...MESSAGE, content: [] } })}\n\n`);
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const read = async (fetch: typeof globalThis.fetch) => {
      const client = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0, fetch });
      const seen: string[] = [];
      const deadline = new AbortController();
      try {
        for await (const event of await client.messages.create({ ...ask, stream: true })) seen.push(event.type);
        return { seen, failure: undefined };
      } catch (error) {
        const f = classifyError(spec(5_000), error, { deadline: deadline.signal, caller: undefined }, undefined);
        return { seen, failure: { kind: f.kind, status: f.status, message: f.message.split(':')[0] } };
      }
    };
    const [builtIn, ours] = [await read(globalThis.fetch), await read(createHttpFetch())];
    expect(ours).toEqual({ seen: ['message_start'], failure: { kind: 'network', status: null, message: 'connection closed mid-response' } });
    expect(ours).toEqual(builtIn);
  });

  it('holds the socket while its reader is behind: a body nobody reads is not buffered whole', async () => {
    const TOTAL = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let sent = 0;
    const url = await stub((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) });
      const more = () => {
        while (sent < TOTAL) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    const response = await createHttpFetch()(url);
    const reader = response.body!.getReader();
    const first = await reader.read();
    // The server writes as fast as the socket takes its bytes; with the reader stopped, it must stall.
    let stalledAt = -1;
    while (stalledAt !== sent) {
      stalledAt = sent;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(sent).toBeLessThan(TOTAL);
    // Read on, it all comes.
    let received = first.value?.byteLength ?? 0;
    for (let r = await reader.read(); !r.done; r = await reader.read()) received += r.value.byteLength;
    expect(received).toBe(TOTAL);
  });

  it('keeps one connection for calls in sequence (keep-alive)', async () => {
    const sockets = new Set<unknown>();
    const url = await stub((req, res) => {
      sockets.add(req.socket);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(MESSAGE));
    });
    const client = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0, fetch: createHttpFetch() });
    for (let i = 0; i < 5; i++) await client.messages.create(ask);
    expect(sockets.size).toBe(1);
  });
});

describe('createHttpFetch over https', () => {
  it('answers a call, and refuses a server whose certificate it does not trust as a connection error', async () => {
    // A throwaway self-signed certificate for 127.0.0.1, made here so no key is kept in the repo.
    const dir = mkdtempSync(join(tmpdir(), 'http-fetch-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
      const cert = readFileSync(join(dir, 'cert.pem'));
      const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_tls' });
        res.end(JSON.stringify(MESSAGE));
      });
      servers.push(server as unknown as Server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const baseURL = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const call = (fetch: typeof globalThis.fetch) => {
        const client = new Anthropic({ apiKey: KEY, baseURL, maxRetries: 0, fetch });
        return runSdkCall(spec(5_000), undefined, ({ timeout, signal }) => client.messages.create(ask, { timeout, signal }).asResponse());
      };
      expect(await call(createHttpFetch({ ca: cert }))).toMatchObject({ ok: true, status: 200, requestId: 'req_tls', response: MESSAGE });
      const untrusted = await call(createHttpFetch());
      expect(untrusted).toMatchObject({ ok: false, kind: 'network', status: null });
      expect(!untrusted.ok && untrusted.message).toMatch(/^connection error: .*self[- ]signed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the adapters send through it', () => {
  it('Anthropic and OpenAI: no request carries the headers only the built-in fetch adds', async () => {
    const seen: IncomingMessage['headers'][] = [];
    const url = await stub((req, res) => {
      seen.push(req.headers);
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{}');
    });
    const request = { ...ask } as unknown as ProviderRequest;
    await new AnthropicAdapter({ apiKey: KEY, baseURL: url, timeoutMs: 5_000 }).call({ model: MODEL, request });
    await new OpenAIAdapter({ apiKey: KEY, baseURL: `${url}/v1`, timeoutMs: 5_000 }).call({ model: 'gpt-4o', request: { model: 'gpt-4o', messages: [{ role: 'user', content: 'Hi' }] } as unknown as ProviderRequest });
    expect(seen).toHaveLength(2);
    // undici's fetch adds `sec-fetch-mode: cors` to every request.
    for (const headers of seen) expect(headers['sec-fetch-mode']).toBeUndefined();
  });
});
