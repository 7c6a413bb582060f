/**
 * The `fetch` the provider SDKs call through (their documented `fetch` option): node:http(s) over
 * a keep-alive agent instead of Node's built-in fetch (undici). The SDK still builds, sends and
 * reads every call; only the transport under it changes. Measured against the simulator at zero
 * latency, the SDK's call read as the worker reads it (`asResponse()`, then `text()`): p50 1.1-1.2
 * -> 0.85 ms, and 1.5-2.0 -> 1.1-1.2 ms of CPU per call (docs/benchmarks.md, gateway section).
 *
 * It fails in the shapes the classification reads from undici (sdk-call.ts `classifyError`):
 * - no response (refused, reset, DNS): rejects with `TypeError('fetch failed', { cause })`, the
 *   socket error with its `code` as the cause; the SDK wraps it in its connection error;
 * - aborted (the SDK's timeout, or the worker): the signal's reason (a DOMException named
 *   `AbortError`), before the head or mid-body alike;
 * - cut mid-body: the body stream errors with `TypeError('terminated', { cause })`.
 *
 * The body is a ReadableStream fed from the socket with backpressure (a slow reader pauses the
 * socket), as a streamed call needs. What it does not handle goes to the built-in fetch, unchanged:
 * a `Request` object, a URL that is not http(s), a body that is not text or bytes (uploads).
 * Unlike undici it follows no redirect (a provider API answers none: a 3xx is the SDK's error) and
 * asks for no compression (a body sent compressed anyway is decoded).
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';

/**
 * How long an idle kept-alive socket is kept: undici's default. A provider's load balancer drops
 * idle connections after a while; a request sent on one it just dropped fails (a network failure,
 * retried by our policy), so idle sockets are let go first.
 */
export const IDLE_SOCKET_MS = 4_000;

/**
 * When each response's body last received bytes (epoch ms), by response: what a stream's idle
 * timeout reads (sdk-stream.ts). Bytes, not the SDK's events: both SDKs drop Anthropic's `ping`
 * events unseen, and a provider that pings is not silent.
 */
const lastBytesAt = new WeakMap<Response, { at?: number }>();

/** When `response`'s body last received bytes, if this fetch made it and any came. */
export function lastBytesOf(response: Response): number | undefined {
  return lastBytesAt.get(response)?.at;
}

/** Statuses whose response has no body (fetch's null body statuses). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface HttpFetchOptions {
  /** What a URL it does not handle goes to. @default globalThis.fetch */
  fallback?: FetchFunction;
  /** Certificate authorities trusted over https in place of Node's own (a test's self-signed server). */
  ca?: string | Buffer;
}

/** A fetch over node:http(s) with its own keep-alive agents (one per adapter: its connection pool). */
export function createHttpFetch(options: HttpFetchOptions = {}): FetchFunction {
  const fallback = options.fallback ?? globalThis.fetch;
  const agents = {
    'http:': new HttpAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS }),
    'https:': new HttpsAgent({ keepAlive: true, timeout: IDLE_SOCKET_MS, ...(options.ca === undefined ? {} : { ca: options.ca }) }),
  };
  return (input, init) => {
    const url = typeof input === 'string' ? new URL(input) : input instanceof URL ? input : undefined;
    const body = init?.body;
    const sendable = body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array;
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || !sendable) return fallback(input, init);
    return send(url, init ?? {}, body ?? undefined, agents[url.protocol]);
  };
}

function send(url: URL, init: RequestInit, body: string | Uint8Array | undefined, agent: HttpAgent): Promise<Response> {
  const signal = init.signal ?? undefined;
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  const method = (init.method ?? 'GET').toUpperCase();
  const headers: OutgoingHttpHeaders = {};
  (init.headers instanceof Headers ? init.headers : new Headers(init.headers)).forEach((value, name) => {
    headers[name] = value;
  });
  if (body !== undefined) headers['content-length'] = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  return new Promise<Response>((resolve, reject) => {
    const request = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method, headers, agent });
    /** Set once the head came: failures from then on error the body instead. */
    let failBody: ((error: unknown) => void) | undefined;
    const onAbort = () => {
      const reason = abortReason(signal!);
      request.destroy();
      if (failBody) failBody(reason);
      else reject(reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => signal?.removeEventListener('abort', onAbort);
    request.on('error', (error) => {
      if (failBody) return failBody(new TypeError('terminated', { cause: error }));
      done();
      reject(new TypeError('fetch failed', { cause: error }));
    });
    request.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const head = new Headers();
      for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) head.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
      // One clock per response, its entry made once: a chunk costs a property write, not a map's.
      const clock: { at?: number } = {};
      const stream = NULL_BODY.has(status) || method === 'HEAD' ? null : bodyStream(res, request.destroy.bind(request), done, () => (clock.at = Date.now()));
      if (stream === null) {
        res.resume();
        done();
      } else failBody = stream.fail;
      try {
        const response = new Response(stream?.body ?? null, { status, statusText: res.statusMessage ?? '', headers: head });
        if (stream !== null) lastBytesAt.set(response, clock);
        resolve(response);
      } catch (error) {
        // A status fetch cannot represent (outside 200-599): as undici, no response.
        request.destroy();
        done();
        reject(new TypeError('fetch failed', { cause: error }));
      }
    });
    request.end(body);
  });
}

/** The response body as a web stream: paused while the reader is behind, errored as undici errors it. */
function bodyStream(res: IncomingMessage, destroy: () => void, done: () => void, onBytes: () => void): { body: ReadableStream<Uint8Array>; fail(error: unknown): void } {
  const source = decoded(res);
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let settled = false;
  const fail = (error: unknown) => {
    if (settled) return;
    settled = true;
    done();
    destroy();
    controller.error(error);
  };
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      source.on('data', (chunk: Buffer) => {
        if (settled) return;
        onBytes();
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 0) <= 0) source.pause();
      });
      source.on('end', () => {
        if (settled) return;
        settled = true;
        done();
        controller.close();
      });
      // A socket closed before the body's end: undici's "terminated", its cause the socket's error.
      source.on('error', (error) => fail(new TypeError('terminated', { cause: error })));
      res.on('close', () => {
        if (!res.complete) fail(new TypeError('terminated', { cause: Object.assign(new Error('other side closed'), { code: 'ECONNRESET' }) }));
      });
    },
    pull() {
      source.resume();
    },
    cancel() {
      settled = true;
      done();
      destroy();
    },
  });
  return { body, fail };
}

/** The body decoded when the server compressed it although we did not ask. */
function decoded(res: IncomingMessage): Readable {
  const encoding = String(res.headers['content-encoding'] ?? '').trim().toLowerCase();
  const decoder = encoding === 'gzip' || encoding === 'x-gzip' ? createGunzip() : encoding === 'deflate' ? createInflate() : encoding === 'br' ? createBrotliDecompress() : undefined;
  if (decoder === undefined) return res;
  res.on('error', (error) => decoder.destroy(error));
  return res.pipe(decoder);
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}
