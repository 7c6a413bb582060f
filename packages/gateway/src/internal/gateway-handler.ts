/**
 * What each gateway request gets: its route, its key, its checks, and for a call the Headroom job
 * it becomes through the producer SDK: a plain call waits for the job's result, a streamed one
 * relays the job's events as SSE. Errors go out in the dialect's own shape (wire-errors.ts).
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { JobFailedError, type LlmJobInput, type Producer } from '@headroom/producer-sdk';
import { countTokensIssues, ErrorCode, errorEventOf, FailureCode, jobFailure, kindOf, type HeadroomConfig, type Logger, type Provider } from '@headroom/queue';
import { estimateInputTokens } from '@headroom/queue/token-count';
import { laneFor, presentedKey, type ClientKey, type ClientKeys } from './client-keys.js';
import { clientDrain } from './client-drain.js';
import { anthropic, openai, openaiResponses, requestIdHeader, type Dialect, type ServedModel } from './dialects.js';
import { CLIENT_CLOSED, type GatewayMetrics, type RequestRecord, type RouteLabel } from './gateway-metrics.js';
import { readHeadroomHeaders, type HeadroomOptions } from './headroom-headers.js';
import { decodedId, pageOf } from './model-pages.js';
import { readJsonBody } from './request-body.js';
import { errorBodyOf, fromError, GatewayCode, gatewayRequestId, invalid, type WireError } from './wire-errors.js';

/**
 * A plain call's job may run this long after its start deadline (retries included) before its
 * client is told to retry; a stream's must have started by then (the producer's `stream()` bound:
 * once started, its worker bounds it, `providers.<p>.streamIdleMs` and `streamTimeoutMs`).
 */
const RUN_BOUND_MS = 30 * 60_000;

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** An endpoint: its method, what its requests are counted under, and what answers them. */
interface Route {
  label: RouteLabel;
  method: string;
  run(req: IncomingMessage, res: ServerResponse, dialect: Dialect, path: string): Promise<void> | void;
}

/** A request in flight as it will be counted, and when it came. */
interface Counted extends Omit<RequestRecord, 'status' | 'seconds'> {
  startedAt: number;
}

export class GatewayHandler {
  readonly #modelsOf: Record<Provider, string[]>;

  /** Requests whose answers are not done yet (sent in full, or cut). */
  inFlight = 0;
  #draining = false;
  #cut = false;
  /** The answers not done yet, for a drain to close their connections after them. */
  readonly #answering = new Set<ServerResponse>();
  #onIdle: (() => void) | undefined;
  /** What each request in flight is counted as, filled in as it is known (its key, streaming). */
  readonly #records = new WeakMap<ServerResponse, Counted>();

  constructor(
    private readonly config: HeadroomConfig,
    private readonly keys: ClientKeys,
    private readonly producer: Producer,
    private readonly logger: Logger,
    private readonly metrics: GatewayMetrics,
    /** This gateway's id in the fleet's heartbeats, once it has beaten (undefined before). */
    private readonly waiter: () => string | undefined,
  ) {
    const of = (provider: Provider) => Object.keys(config.models).filter((m) => config.models[m]?.provider === provider);
    this.#modelsOf = { anthropic: of('anthropic'), openai: of('openai') };
  }

  /**
   * From now on each answer closes its connection, and /healthz says the gateway is stopping. The
   * answers already under way close theirs too once they end: a connection kept alive past its
   * answer would take the client's next call only to cut it at the grace's end, where a new
   * connection goes to a live instance.
   */
  drain(): void {
    this.#draining = true;
    for (const res of this.#answering) closeAfter(res);
  }

  /** Cut at the grace's end (the connections are closed next): what a stream cut then says. */
  cut(): void {
    this.#cut = true;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Resolves once every answer is done. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this.#onIdle;
      this.#onIdle = () => {
        previous?.();
        resolve();
      };
    });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = routePath(req.url);
    const dialect = dialectOf(req, path);
    this.inFlight++;
    const route = this.#routeOf(path);
    const record: Counted = { route: route?.label ?? 'other', key: '', stream: false, startedAt: performance.now() };
    this.#records.set(res, record);
    this.#answering.add(res);
    // 'close' follows the answer's last byte handed to the socket, or a client that left: counted
    // once either way. A drain waits for it, not for the handler, whose end() may still be flushing.
    res.once('close', () => {
      this.#answering.delete(res);
      const status = res.headersSent ? String(res.statusCode) : CLIENT_CLOSED;
      this.metrics.record({ ...record, status, seconds: (performance.now() - record.startedAt) / 1000 });
      if (--this.inFlight === 0 && this.#onIdle) {
        const onIdle = this.#onIdle;
        this.#onIdle = undefined;
        onIdle();
      }
    });
    if (this.#draining) closeAfter(res);
    try {
      await this.#route(req, res, path, dialect, route);
    } catch (err) {
      const requestId = gatewayRequestId();
      this.logger.error({ err: (err as Error).message, path, requestId }, 'gateway request failed');
      if (!res.headersSent) this.#send(res, dialect, { kind: 'api_error', code: GatewayCode.INTERNAL, message: 'internal gateway error', requestId });
      else res.destroy();
    }
  }

  /**
   * Sends an error answer. One the gateway gives itself (no provider call answered it, so no
   * provider request id) gets an id of the gateway's own, in the header the client's SDK reads
   * into `requestID` / `_request_id` (and Anthropic's body), and logged with it, so a user can quote
   * it and an operator find it. The lane's backpressure (429s, many a second under load, each
   * retried by the SDK) is logged at debug.
   */
  #send(res: ServerResponse, dialect: Dialect, error: WireError, extra: Record<string, string> = {}): void {
    if (error.requestId === undefined && !res.headersSent) {
      const requestId = gatewayRequestId();
      const status = error.status ?? dialect.status(error.kind);
      this.logger[error.kind === 'rate_limit' ? 'debug' : 'info']({ requestId, status, code: error.code, path: routePath(res.req.url), message: error.message }, 'gateway error answer');
      error = { ...error, requestId };
    }
    send(res, dialect, error, extra);
  }

  #health(res: ServerResponse): void {
    const body = this.#draining ? '{"ok":false,"draining":true}' : '{"ok":true}';
    res.writeHead(this.#draining ? 503 : 200, { 'content-type': 'application/json' }).end(body);
  }

  /** The endpoints, built once: each with the label its requests are counted under. */
  readonly #routes: Record<string, Route> = {
    '/v1/messages': { label: 'messages', method: 'POST', run: (req, res) => this.#call(req, res, anthropic) },
    '/v1/messages/count_tokens': { label: 'count_tokens', method: 'POST', run: (req, res) => this.#countTokens(req, res, anthropic) },
    '/v1/chat/completions': { label: 'chat_completions', method: 'POST', run: (req, res) => this.#call(req, res, openai) },
    '/v1/responses': { label: 'responses', method: 'POST', run: (req, res) => this.#call(req, res, openaiResponses) },
    '/v1/responses/input_tokens': { label: 'input_tokens', method: 'POST', run: (req, res) => this.#countTokens(req, res, openaiResponses) },
    '/v1/models': { label: 'models', method: 'GET', run: (req, res, dialect) => this.#models(req, res, dialect) },
    '/healthz': { label: 'healthz', method: 'GET', run: (_req, res) => this.#health(res) },
  };
  readonly #modelRoute: Route = {
    label: 'models',
    method: 'GET',
    run: (req, res, dialect, path) => this.#model(req, res, dialect, decodedId(path.slice('/v1/models/'.length))),
  };

  #routeOf(path: string): Route | undefined {
    return this.#routes[path] ?? (path.startsWith('/v1/models/') ? this.#modelRoute : undefined);
  }

  async #route(req: IncomingMessage, res: ServerResponse, path: string, dialect: Dialect, route: Route | undefined): Promise<void> {
    if (!route) return this.#send(res, dialect, { kind: 'unknown_endpoint', code: GatewayCode.NOT_FOUND, message: unknownEndpoint(req.method, path), shouldRetry: false });
    // HEAD is GET without the body (Node's server leaves the body out), as HTTP has it: health
    // checkers and proxies probe with it.
    const get = route.method === 'GET';
    if (req.method !== route.method && !(get && req.method === 'HEAD')) {
      res.setHeader('allow', get ? 'GET, HEAD' : route.method);
      return this.#send(res, dialect, { kind: 'method_not_allowed', code: GatewayCode.METHOD_NOT_ALLOWED, message: `${req.method} ${path}: method not allowed; use ${route.method}`, shouldRetry: false });
    }
    await route.run(req, res, dialect, path);
  }

  /** The client's key, or a 401 sent. */
  #authenticate(req: IncomingMessage, res: ServerResponse, dialect: Dialect): ClientKey | undefined {
    const presented = presentedKey(req.headersDistinct);
    const key = 'key' in presented ? this.keys.authenticate(presented.key) : undefined;
    const record = this.#records.get(res);
    if (key && record) record.key = key.name;
    if (!key) {
      const where = dialect.provider === 'anthropic' ? 'x-api-key (or Authorization: Bearer)' : 'Authorization: Bearer';
      const message = 'missing' in presented ? `no API key: send the gateway key in ${where}` : 'conflict' in presented ? `conflicting credentials: ${presented.conflict}; send one key` : 'invalid API key';
      this.#send(res, dialect, { kind: 'authentication', code: GatewayCode.KEY_INVALID, message, shouldRetry: false });
    }
    return key;
  }

  #served(provider: Provider): string[] {
    return this.#modelsOf[provider];
  }

  #models(req: IncomingMessage, res: ServerResponse, dialect: Dialect): void {
    if (!this.#authenticate(req, res, dialect)) return;
    const page = pageOf(this.#served(dialect.provider), new URL(req.url ?? '/', 'http://gateway').searchParams, dialect);
    if ('error' in page) this.#send(res, dialect, invalid([page.error]));
    else res.writeHead(200, ownAnswerHeaders(dialect)).end(dialect.modelList(page.models.map((id) => this.#servedModel(id)), page.hasMore));
  }

  #model(req: IncomingMessage, res: ServerResponse, dialect: Dialect, id: string): void {
    if (!this.#authenticate(req, res, dialect)) return;
    if (!this.#served(dialect.provider).includes(id)) {
      this.#send(res, dialect, { kind: 'not_found', code: FailureCode.UNKNOWN_MODEL, message: `model: ${id}`, shouldRetry: false });
      return;
    }
    res.writeHead(200, ownAnswerHeaders(dialect)).end(dialect.model(this.#servedModel(id)));
  }

  #servedModel(id: string): ServedModel {
    return { id, maxOutputTokens: this.config.models[id]?.maxOutputTokens ?? null };
  }

  /** Common checks of a call: key, version header, headroom headers, body. The body, or undefined once an error was sent. */
  async #prepare(req: IncomingMessage, res: ServerResponse, dialect: Dialect): Promise<{ key: ClientKey; options: HeadroomOptions; body: Json } | undefined> {
    const key = this.#authenticate(req, res, dialect);
    if (!key) return undefined;
    if (dialect.provider === 'anthropic' && !req.headers['anthropic-version']) {
      this.#send(res, dialect, { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: 'anthropic-version: header is required', shouldRetry: false });
      return undefined;
    }
    // A key's own tenant is the tenant: its requests' headroom-tenant is not read, so not refused either.
    const { options, issues } = readHeadroomHeaders(req.headers, key.tenant !== undefined ? { ignore: ['headroom-tenant'] } : {});
    if (issues.length > 0) {
      this.#send(res, dialect, invalid(issues));
      return undefined;
    }
    const body = await readJsonBody(req, { maxBytes: this.config.gateway.maxBodyBytes, timeoutMs: this.config.gateway.bodyTimeoutMs, continue: () => res.writeContinue() });
    if (!body.ok) {
      this.#send(res, dialect, body.error);
      return undefined;
    }
    if (!isRecord(body.value)) {
      this.#send(res, dialect, { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: `the request body must be a JSON object, got ${kindOf(body.value)}`, shouldRetry: false });
      return undefined;
    }
    const model = body.value.model;
    // OpenAI's Chat answer to a call that names no model: its own words, with no param and no code
    // (observed: `{"message": "you must provide a model parameter", "type": "invalid_request_error",
    // "param": null, "code": null}`), as the simulator answers it. The job's check said
    // `missing_required_parameter` with param `model`, which is the Responses API's answer, not Chat's.
    if (dialect.api === 'chat' && (typeof model !== 'string' || model === '')) {
      this.#send(res, dialect, { kind: 'invalid_request', code: ErrorCode.JOB_INVALID, message: 'you must provide a model parameter', shouldRetry: false });
      return undefined;
    }
    if (typeof model === 'string' && model !== '' && !this.#served(dialect.provider).includes(model)) {
      this.#send(res, dialect, { kind: 'not_found', code: FailureCode.UNKNOWN_MODEL, message: `model: ${model} is not served by this gateway (GET /v1/models lists the ${dialect.provider} models it serves)`, shouldRetry: false });
      return undefined;
    }
    const strange = (options.fallback ?? []).filter((m) => !this.#served(dialect.provider).includes(m));
    if (strange.length > 0) {
      this.#send(res, dialect, invalid([{ path: 'fallback', message: `not ${dialect.provider} models this gateway serves: ${strange.join(', ')}` }]));
      return undefined;
    }
    return { key, options, body: body.value };
  }

  /**
   * Anthropic's count_tokens and OpenAI's Responses input_tokens, answered here: no provider key
   * lives in the gateway, so the count is the estimate the fleet reserves with, and says so.
   */
  async #countTokens(req: IncomingMessage, res: ServerResponse, dialect: Dialect): Promise<void> {
    const prepared = await this.#prepare(req, res, dialect);
    if (!prepared) return;
    const { body } = prepared;
    // What the call's own endpoint refuses is not counted either: the provider's count refuses it too.
    const issues = countTokensIssues(body, dialect.api === 'messages' ? 'messages' : 'responses');
    if (issues.length > 0) return this.#send(res, dialect, invalid(issues));
    const input_tokens = estimateInputTokens(body);
    const answer = dialect.api === 'messages' ? { input_tokens } : { object: 'response.input_tokens', input_tokens };
    res.writeHead(200, { ...ownAnswerHeaders(dialect), 'headroom-estimate': 'o200k_base' }).end(JSON.stringify(answer));
  }

  async #call(req: IncomingMessage, res: ServerResponse, dialect: Dialect): Promise<void> {
    const prepared = await this.#prepare(req, res, dialect);
    if (!prepared) return;
    const { key, options, body } = prepared;
    const record = this.#records.get(res);
    if (record) record.stream = body.stream === true;
    // A batch job has no start deadline: the provider's batch API answers within its own window.
    if (options.sla === 'none' && options.maxWaitMs !== undefined) {
      return this.#send(res, dialect, invalid([{ path: 'maxWaitMs', message: 'cannot be combined with headroom-sla: none: a batch call starts when its batch is sent and answers within the batch window, so no start deadline applies' }]));
    }
    const maxWaitMs = options.maxWaitMs ?? this.config.gateway.maxWaitMs;
    const job = {
      priority: laneFor(key, options.priority).toUpperCase(),
      provider: dialect.provider,
      ...(dialect.api === 'responses' ? { api: 'responses' } : {}),
      request: body,
      maxWaitMs,
      // A key's tenant is the key's: a header cannot move its requests to another tenant.
      ...(key.tenant !== undefined ? { tenant: key.tenant } : options.tenant !== undefined ? { tenant: options.tenant } : {}),
      ...(options.fallback ? { fallback: options.fallback } : {}),
      ...(options.sla ? { sla: options.sla } : {}),
      ...callerScope(key, key.tenant ?? options.tenant),
      ...(options.idempotencyKey !== undefined ? { idempotencyKey: options.idempotencyKey } : {}),
      ...(options.coalesce !== undefined ? { coalesce: options.coalesce } : {}),
      ...(dialect.provider === 'anthropic' ? betasFromHeader(req.headers['anthropic-beta']) : {}),
      ...waitedOnBy(this.waiter(), options),
    } as LlmJobInput;
    if (body.stream === true) await this.#streamed(res, dialect, job, maxWaitMs);
    else await this.#plain(res, dialect, job, maxWaitMs);
  }

  /**
   * The client's start deadline is the producer's (`headroom-max-wait-ms` is the job's
   * `maxWaitMs`): a job not started within it is withdrawn for this client (removed, or, shared
   * with others through `headroom-coalesce` or an idempotency key, left to them with this client's
   * share given back) and the client told to retry. A client that leaves is withdrawn the same way.
   */
  async #plain(res: ServerResponse, dialect: Dialect, job: LlmJobInput, maxWaitMs: number): Promise<void> {
    let handle: Awaited<ReturnType<Producer['enqueue']>>;
    const arrivedAt = Date.now();
    try {
      handle = await this.producer.enqueue(job);
    } catch (err) {
      return this.#send(res, dialect, fromError(err));
    }
    const ids = { 'headroom-job-id': handle.id, 'headroom-lane': handle.lane, ...joined(handle.existing) };
    const gone = new AbortController();
    // A client that leaves before its call starts takes the job with it: nothing is sent.
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
    });
    try {
      const result = await handle.result({ timeoutMs: maxWaitMs + RUN_BOUND_MS, signal: gone.signal });
      if (gone.signal.aborted) return;
      const body = JSON.stringify(result.response);
      res
        .writeHead(200, {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          ...ids,
          'headroom-model': result.model,
          'headroom-wait-ms': waitHeader(handle.existing, arrivedAt, result.timings.waitMs, result.timings.enqueuedAt + result.timings.waitMs),
          ...requestIdHeader(dialect, result.providerRequestId),
        })
        .end(body);
    } catch (err) {
      if (!gone.signal.aborted) this.#send(res, dialect, fromError(err), ids);
    }
  }

  async #streamed(res: ServerResponse, dialect: Dialect, job: LlmJobInput, maxWaitMs: number): Promise<void> {
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    let stream: Awaited<ReturnType<Producer['stream']>>;
    const arrivedAt = Date.now();
    try {
      // A stream not started within its bound is cancelled, not left to start for no one.
      stream = await this.producer.stream(job, { signal: abort.signal, timeoutMs: maxWaitMs + RUN_BOUND_MS, cancelOnTimeout: true });
    } catch (err) {
      if (!abort.signal.aborted) this.#send(res, dialect, fromError(err));
      return;
    }
    const ids = { 'headroom-job-id': stream.id, 'headroom-lane': stream.lane, ...joined(stream.existing) };
    let start: Awaited<ReturnType<typeof stream.started>>;
    try {
      // Rejects DEADLINE_EXCEEDED once the job has not started within the client's max wait.
      start = await stream.started();
    } catch (err) {
      if (!abort.signal.aborted) this.#send(res, dialect, fromError(err), ids);
      return;
    }
    // Keep-alive even while draining (in place of closeAfter's `connection: close`): after a head
    // that says close, the SDKs' fetch (undici) takes the connection's close, even a reset, as the
    // body's end, chunked or not, so a stream cut at the grace's end read as whole. A draining
    // gateway closes the connection once the stream has ended instead (closeAfter).
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      ...ids,
      'headroom-model': start.model,
      'headroom-wait-ms': waitHeader(stream.existing, arrivedAt, start.waitMs, start.startedAt),
      ...requestIdHeader(dialect, start.providerRequestId),
    });
    const record = this.#records.get(res);
    // Reset by every frame written: only a silence as long as the interval gets a ping.
    const keepAlive = setInterval(() => {
      if (!res.destroyed) res.write(dialect.pingFrame);
    }, this.config.gateway.streamPingMs);
    /** Events written: a Responses error event is numbered after them. */
    let events = 0;
    try {
      for await (const data of stream.raw()) {
        keepAlive.refresh();
        events += 1;
        if (record && record.firstByteSeconds === undefined) record.firstByteSeconds = (performance.now() - record.startedAt) / 1000;
        // The events of one read from Redis come in microtasks: corked until the next tick, they
        // leave (with the head, the first time) in one write, so the client wakes once for them.
        if (res.writableCorked === 0) {
          res.cork();
          process.nextTick(() => res.uncork());
        }
        if (res.write(dialect.frame(data))) continue;
        const why = await clientDrain(res, this.config.gateway.slowClientMs);
        if (why === 'drained') continue;
        // A client that stops reading holds nothing here for long: its call is stopped. A closed
        // connection already stopped it (its close handler); the log names which it was.
        if (why === 'slow') this.logger.warn({ jobId: stream.id }, 'stream client too slow; cutting it off');
        else if (this.#cut) this.logger.warn({ jobId: stream.id }, "stream cut: the gateway's shutdown grace ran out");
        abort.abort();
        res.destroy();
        return;
      }
      res.end(dialect.endFrame);
    } catch (err) {
      // Ended with an error event (the provider's, or one in its shape), already written as its
      // last frame: the client's SDK raises it.
      if (err instanceof JobFailedError) return void res.end();
      // The client left, or the gateway's grace ran out: cut, and the client's SDK (if still
      // there) retries elsewhere.
      if (abort.signal.aborted || this.#cut || !res.writable) return void res.destroy();
      // The gateway lives, but the rest of the answer will not come (its relay gone with a Redis
      // restarted empty, the wait ran out): it ends with an error event in the API's shape, so
      // the client's SDK raises an API error saying why. Cut, the SDKs raised a bare
      // `TypeError: terminated`; ended cleanly, the client would take half an answer as whole.
      const failure = jobFailure(FailureCode.STREAM_FAILED, `the rest of this answer cannot be streamed: ${(err as Error).message}`);
      res.end(dialect.frame(errorEventOf(dialect.api, failure, events)));
    } finally {
      clearInterval(keepAlive);
    }
  }
}

/**
 * The head of a success the gateway answers itself (the model list, a model, a token count): no
 * provider call answered it, so the request id is the gateway's own, as on its own errors. The
 * providers send one on every answer, and the SDKs read it into `_request_id` (`withResponse()`'s
 * `request_id`): without it a service that logs or asserts that id got null from these calls.
 */
function ownAnswerHeaders(dialect: Dialect): Record<string, string> {
  return { 'content-type': 'application/json', ...requestIdHeader(dialect, gatewayRequestId()) };
}

/**
 * The betas a client's `anthropic-beta` header opts into (comma-separated, as the SDK sends them;
 * Node joins a repeated header the same way), for the worker to send with the provider call. The
 * job's validation checks each name.
 */
function betasFromHeader(header: string | string[] | undefined): { betas?: string[] } {
  const betas = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((b) => b.trim()).filter((b) => b !== '');
  return betas.length > 0 ? { betas } : {};
}

/**
 * Closes the answer's connection once the answer is out, so the client's next call opens a new
 * one, to another instance, rather than reuse one about to be cut. An answer not begun says so in
 * its head (`connection: close`: a stream's head overrides it, see #streamed); one under way, begun
 * kept alive, has its connection closed after its last byte.
 */
function closeAfter(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('connection', 'close');
  const socket = res.socket;
  if (res.writableFinished) socket?.destroySoon();
  else res.once('finish', () => socket?.destroySoon());
}

/**
 * The path a request is routed by: without its query, and without one trailing slash
 * (`/v1/messages/`, `/v1/models/`, as a hand-built URL or a client's path joined with a slash
 * produces them; the simulator serves them too), so `/v1/models/` is the list, not a model "".
 */
function routePath(url = '/'): string {
  const path = url.split('?')[0] ?? '/';
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/**
 * Why a path is not served. A stored Response's own endpoints (`responses.retrieve`, `delete`,
 * `cancel`, `inputItems.list`) are named as such: a call through the gateway is stored (OpenAI's
 * default `store: true`) in the fleet's OpenAI project, under a key its clients do not hold, and
 * "no such endpoint" alone left them looking for a typo.
 */
function unknownEndpoint(method = 'GET', path: string): string {
  if (path.startsWith('/v1/responses/')) {
    return `${method} ${path}: stored responses are not served through the gateway, only new calls (POST /v1/responses) and their token counts (POST /v1/responses/input_tokens): a response is stored in the fleet's OpenAI project, so retrieve, cancel or delete it there, or send store: false to keep it from being stored`;
  }
  return `${method} ${path}: no such endpoint; the gateway serves POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/chat/completions, POST /v1/responses, POST /v1/responses/input_tokens and GET /v1/models`;
}

/** Which provider's shape an answer takes where the route does not say (models, unknown paths). */
function dialectOf(req: IncomingMessage, path: string): Dialect {
  if (path.startsWith('/v1/messages')) return anthropic;
  if (path.startsWith('/v1/chat')) return openai;
  if (path.startsWith('/v1/responses')) return openaiResponses;
  return req.headers['anthropic-version'] !== undefined || req.headers['x-api-key'] !== undefined ? anthropic : openai;
}

/**
 * `headroom-joined: true` on a call that joined a job already there (a coalesced request, a
 * repeat of an idempotency key): its usage and cost are that job's, shared with whoever else
 * asked, so a service that bills per call can tell it from a call of its own.
 */
function joined(existing: boolean): { 'headroom-joined'?: string } {
  return existing ? { 'headroom-joined': 'true' } : {};
}

/**
 * `headroom-wait-ms`: this caller's wait for the provider call to start (at `callStartedAt`). The
 * job's own wait (`jobWaitMs`) is the first caller's; one that joined the job later waited only
 * from its arrival (nothing when the call had started already), and reading the job's wait it
 * took the queue for slower than it was. The clamp keeps a clock apart between gateway and worker
 * (the call's start is the worker's) within what the job itself waited.
 */
function waitHeader(joinedJob: boolean, arrivedAt: number, jobWaitMs: number, callStartedAt: number): string {
  const waitMs = joinedJob ? Math.min(jobWaitMs, Math.max(0, callStartedAt - arrivedAt)) : jobWaitMs;
  return String(Math.round(waitMs));
}

/**
 * Sends an error in the dialect's shape. A request body not read yet is discarded by Node after
 * the answer (so a client still sending reads the answer rather than a reset connection), within
 * the server's request timeout.
 */
function send(res: ServerResponse, dialect: Dialect, error: WireError, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = error.status ?? dialect.status(error.kind);
  const headers: Record<string, string> = { 'content-type': 'application/json', ...extra };
  if (error.retryAfterMs !== undefined) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(error.retryAfterMs / 1000)));
    headers['retry-after-ms'] = String(Math.ceil(error.retryAfterMs));
  }
  if (error.shouldRetry !== undefined) headers['x-should-retry'] = String(error.shouldRetry);
  headers['headroom-error-code'] = error.code;
  Object.assign(headers, requestIdHeader(dialect, error.requestId));
  const body = errorBodyOf(dialect, error);
  headers['content-length'] = String(Buffer.byteLength(body));
  // Node knows no reason phrase for Anthropic's 529 and would send "unknown".
  res.writeHead(status, status === 529 ? 'Overloaded' : STATUS_CODES[status], headers).end(body);
}

/**
 * The gateway a job names as the one waiting on it, so that workers withdraw it if this gateway is
 * killed (a SIGKILL, an OOM: its clients are cut off and their SDKs send their calls elsewhere).
 * Only on a job no other caller can share: a job joined through an idempotency key or coalescing
 * may have callers elsewhere (a Producer, another gateway, the retry of this very call under its
 * key), and the job records how many share it, not who. A batch call is left alone too: its batch
 * is submitted by the batch lane's leader, which does not ask.
 */
function waitedOnBy(gateway: string | undefined, options: HeadroomOptions): { gateway?: string } {
  const unwatched = options.idempotencyKey !== undefined || options.coalesce === true || options.sla === 'none';
  return gateway === undefined || unwatched ? {} : { gateway };
}

/**
 * Jobs are shared within a tenant only, by idempotency key or coalescing (job-ids.ts); a call with
 * no tenant is scoped to the client key that sent it, one way for both, so two clients without
 * tenants never share a job: by choosing the same key one would read the other's answer, and by
 * sending the same body with `headroom-coalesce` one would learn the other's request was in flight
 * and get its answer.
 */
function callerScope(key: ClientKey, tenant: string | undefined): { scope?: string } {
  return tenant === undefined ? { scope: `gateway-key:${key.name}` } : {};
}
