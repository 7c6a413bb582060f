/**
 * The gateway's HTTP server (node:http, no framework: the path is a handful of routes, and every
 * microsecond here is added to each call). A call becomes a Headroom job through the producer
 * SDK: plain calls wait for the job's result, streamed calls relay the job's events as SSE.
 */
import { randomUUID } from 'node:crypto';
import { createServer, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { JobFailedError, Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { countTokensIssues, createLogger, createRedis, untilReady, listen, reportOutages, ErrorCode, errorEventOf, RedisUnavailableError, FailureCode, Heartbeat, jobFailure, kindOf, type HeadroomConfig, type Logger, type Provider, within } from '@headroom/queue';
import { serveMetrics, type MetricsServer } from '@headroom/queue/metrics-server';
import { estimateInputTokens } from '@headroom/queue/token-count';
import { ClientKeys, laneFor, presentedKey, type ClientKey } from './client-keys.js';
import { anthropic, openai, openaiResponses, requestIdHeader, type Dialect, type ServedModel } from './dialects.js';
import { CLIENT_CLOSED, GatewayMetrics, type RequestRecord, type RouteLabel } from './gateway-metrics.js';
import { readHeadroomHeaders, type HeadroomOptions } from './headroom-headers.js';
import { readJsonBody } from './request-body.js';
import { clientDrain } from './client-drain.js';
import { errorBodyOf, fromError, GatewayCode, invalid, type WireError } from './wire-errors.js';

export interface GatewayOptions {
  config: HeadroomConfig;
  redisUrl: string;
  /** Where client keys are read from (by the names in config). @default process.env */
  env?: NodeJS.ProcessEnv;
  /** @default config.gateway.port */
  port?: number;
  /** What chose `port`, named when it cannot be listened on (the CLI's `--port`). @default 'gateway.port', or 'the port option' when `port` is given */
  portSetting?: string;
  /** @default config.gateway.host */
  host?: string;
  logger?: Logger;
}

export interface RunningGateway {
  /** Its entry in the fleet's gateways (the dashboard, `headroom status`). */
  readonly id: string;
  /** `http://host:port`: Anthropic's baseURL as is, OpenAI's with `/v1` appended. */
  readonly url: string;
  readonly port: number;
  /** This process's counters (served on `gateway.metricsPort` when set). */
  readonly metrics: GatewayMetrics;
  /** Where /metrics, /healthz and /readyz are served, when `gateway.metricsPort` is set. */
  readonly metricsPort?: number;
  /**
   * Drains: takes no new connection, answers `/healthz` 503 and closes each connection after its
   * answer, and gives the calls it holds up to `gateway.shutdownGraceMs` to be answered; then cuts
   * the rest (a stream's call is stopped, a job not started is cancelled).
   */
  close(): Promise<void>;
}

/** After the grace, how long the cut calls' cancels are given before the producer closes. */
const CUT_SETTLE_MS = 2_000;

/** A job may run this long after it started (retries included) before its client is told to retry. */
const RUN_BOUND_MS = 30 * 60_000;

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const { config } = opts;
  // Keys first: a gateway missing one must say so before it touches Redis.
  const keys = ClientKeys.fromConfig(config, opts.env ?? process.env);
  const logger = opts.logger ?? createLogger({ name: 'gateway' });
  const producer = new Producer({ redis: opts.redisUrl, prefix: config.redis.prefix, maxJobBytes: config.limits.maxJobBytes });
  const metrics: GatewayMetrics = new GatewayMetrics({ defaultMetrics: config.gateway.metricsPort !== undefined, inFlight: (): number => handler.inFlight });
  const id = `gateway-${randomUUID().slice(0, 8)}`;
  // Its jobs name it once its first beat is written: a worker must find the gateway a job names.
  const handler: GatewayHandler = new GatewayHandler(config, keys, producer, logger, metrics, (): string | undefined => (heartbeat.written ? id : undefined));
  const { headersTimeoutMs, bodyTimeoutMs } = config.gateway;
  // Sockets whose request head has arrived, with its answer: a timeout on one of those is its
  // body's, and once its answer has started, a second answer would corrupt the stream.
  const answering = new WeakMap<Socket, ServerResponse>();
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    answering.set(req.socket, res);
    // A body answered early is still being discarded after the answer: its socket stays marked,
    // so a timeout then closes it rather than writing a second answer behind the first.
    res.once('close', () => {
      if (req.complete && answering.get(req.socket) === res) answering.delete(req.socket);
    });
    void handler.handle(req, res);
  };
  const server = createServer(
    {
      maxHeaderSize: config.gateway.maxHeaderBytes,
      headersTimeout: headersTimeoutMs,
      // The body has its own, shorter deadline (request-body.ts), answered in the provider's
      // shape; this one bounds a request whose body is being discarded after an early answer.
      requestTimeout: headersTimeoutMs + bodyTimeoutMs + 1_000,
      // Node checks both timeouts only on this sweep (30 s by default), so a 2 s headersTimeoutMs
      // cut a trickling client off after 20-30 s. Sweeping at least every second (and twice per
      // timeout) holds each limit to within a second of its value.
      connectionsCheckingInterval: Math.max(1, Math.min(1_000, Math.floor(headersTimeoutMs / 2))),
    },
    onRequest,
  );
  // `Expect: 100-continue`: Node would send 100 Continue at once, and the client upload its whole
  // body before hearing that its key is wrong or its body too large. Handled as any request, the
  // refusals decided by the head (route, method, key, headers, content-length) go out first, and
  // only a request about to be read is told to continue (readJsonBody's `continue`). Node closes
  // the connection after a refusal that sent no 100, so an unsent body is never waited for.
  server.on('checkContinue', onRequest);
  // A request Node could not parse (a header with a bare newline, a head over the size limit) or
  // that did not arrive in time never reaches the handler: answer it plainly and close, never crash.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const res = answering.get(socket);
    if (!socket.writable || res?.headersSent) return socket.destroy();
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : timeout ? 408 : 400;
    const message = !timeout
      ? `malformed HTTP request (${err.code ?? 'parse error'})`
      : res
        ? `the request body did not arrive in time (within ${headersTimeoutMs + bodyTimeoutMs + 1_000} ms of the request's start: gateway.headersTimeoutMs + gateway.bodyTimeoutMs + 1 s)`
        : `the request head did not arrive in time (within ${headersTimeoutMs} ms: gateway.headersTimeoutMs)`;
    const body = JSON.stringify({ type: 'error', error: { type: timeout ? 'timeout_error' : 'invalid_request_error', message } });
    // Only a timeout may go better on a retry; a request Node cannot parse fails the same way again.
    const retry = timeout ? '' : 'x-should-retry: false\r\n';
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${retry}connection: close\r\n\r\n${body}`);
  });
  // Node's 5 s default is shorter than an SDK pool keeps an idle socket: a call reusing one as the
  // gateway closes it fails with ECONNRESET. headersTimeout still bounds each request's head: Node
  // times a head from its first byte, not from the end of the answer before it.
  server.keepAliveTimeout = config.gateway.keepAliveTimeoutMs;
  // Seen by the dashboard and `headroom status` beside the workers. Its own connection, so a beat
  // never waits behind an enqueue, and one that fails fast: a beat while Redis is away is missed,
  // not queued, and never holds up a stop. Workers withdraw the jobs it waits on once its beats
  // stop (a SIGKILL, an OOM): the interval bounds how long after its death one may still start.
  const heartbeatRedis = createRedis(opts.redisUrl, 'producer');
  reportOutages(heartbeatRedis, logger, 'heartbeat');
  const heartbeat = new Heartbeat({ redis: heartbeatRedis, prefix: config.redis.prefix, kind: 'gateway', id, concurrency: 0, inFlight: () => handler.inFlight, intervalMs: config.gateway.heartbeatMs, logger });
  // Down (REDIS_UNAVAILABLE): it starts anyway (its answers say Redis is away until it is back).
  // Refusing it (REDIS_REFUSED: password, database, certificate): every retry would be refused,
  // so the start fails before it listens, naming the Redis and why. The producer's connection
  // goes to the same Redis.
  try {
    await untilReady(heartbeatRedis, { waitMs: 5_000 });
  } catch (err) {
    if (!(err instanceof RedisUnavailableError)) {
      heartbeatRedis.disconnect();
      await producer.close();
      throw err;
    }
  }
  const portSetting = opts.portSetting ?? (opts.port === undefined ? 'gateway.port' : 'the port option');
  const { metricsPort: metricsPortSetting } = config.gateway;
  let metricsServer: MetricsServer | undefined;
  try {
    // The metrics server first: its port in use is a config mistake refused before the gateway
    // takes a call. Started after, it failed with the gateway listening, which then accepted
    // calls (and took their jobs) until the process exited over the error.
    metricsServer =
      metricsPortSetting === undefined
        ? undefined
        : await serveMetrics('gateway', { ...config.gateway, metricsPort: metricsPortSetting }, {
            env: opts.env ?? process.env,
            logger,
            registry: metrics.registry,
            // Ready while it takes calls: not before it listens, nor once it drains.
            health: () => {
              const ready = server.listening && !handler.draining;
              return { ready, body: { ok: ready, inFlight: handler.inFlight } };
            },
          });
    await listen(server, { port: opts.port ?? config.gateway.port, host: opts.host ?? config.gateway.host, what: 'the gateway', setting: portSetting });
  } catch (err) {
    // Nothing was served: let go of the port and Redis, so a caller that handles the error is not kept alive.
    await metricsServer?.close();
    heartbeatRedis.disconnect();
    await producer.close();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const host = opts.host ?? config.gateway.host;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  // Its first beat waits for the connection (a fail-fast one refuses commands until then).
  const startBeating = () => heartbeat.start();
  // Checked before the gateway listened, the connection may be ready already.
  if (heartbeatRedis.status === 'ready') startBeating();
  else heartbeatRedis.once('ready', startBeating);
  const url = `http://${shown}:${port}`;
  // Start and stop as JSON log lines, as the worker and the dashboard write them: a log that
  // ended at the start (and a plain-text line among JSON ones) left a SIGTERM stop unseen.
  logger.info({ id, url, port, keys: Object.keys(config.gateway.keys), metricsPort: metricsServer?.port }, 'gateway started');
  let closing: Promise<void> | undefined;
  return {
    id,
    url,
    port,
    metrics,
    ...(metricsServer ? { metricsPort: metricsServer.port } : {}),
    close: () => {
      closing ??= (async () => {
        // A rolling deploy's SIGTERM: the answers in flight are the clients' (some already paid
        // for at the provider), so they are given time, while the load balancer, told by
        // /healthz, sends new calls elsewhere.
        logger.info({ id, inFlight: handler.inFlight }, 'gateway stopping');
        // A SIGTERM before the connection was first ready: its first beat must not come after the
        // stop (a "heartbeat failed" past "gateway stopped", or an entry written after its removal).
        heartbeatRedis.off('ready', startBeating);
        handler.drain();
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const drained = await within(handler.idle(), config.gateway.shutdownGraceMs);
        if (!drained) logger.warn({ inFlight: handler.inFlight, graceMs: config.gateway.shutdownGraceMs }, 'gateway stopping: cutting the calls still in flight');
        handler.cut();
        server.closeAllConnections();
        await stopped;
        // A cut call cancels its job from its own close handler: let those cancels go out first.
        await within(handler.idle(), CUT_SETTLE_MS);
        await producer.close();
        await metricsServer?.close();
        await heartbeat.stop();
        heartbeatRedis.disconnect();
        logger.info({ id, drained }, 'gateway stopped');
        // The last line: let it reach stdout before a caller exits the process.
        await within(new Promise<void>((resolve) => logger.flush(() => resolve())), 1_000);
      })();
      return closing;
    },
  };
}

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

class GatewayHandler {
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
    '/v1/messages/count_tokens': { label: 'count_tokens', method: 'POST', run: (req, res) => this.#countTokens(req, res) },
    '/v1/chat/completions': { label: 'chat_completions', method: 'POST', run: (req, res) => this.#call(req, res, openai) },
    '/v1/responses': { label: 'responses', method: 'POST', run: (req, res) => this.#call(req, res, openaiResponses) },
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
    if (!route) return this.#send(res, dialect, { kind: 'unknown_endpoint', code: GatewayCode.NOT_FOUND, message: `${req.method} ${path}: no such endpoint; the gateway serves POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/chat/completions, POST /v1/responses and GET /v1/models`, shouldRetry: false });
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
    const presented = presentedKey(req.headers as { 'x-api-key'?: string; authorization?: string });
    const key = this.keys.authenticate(presented);
    const record = this.#records.get(res);
    if (key && record) record.key = key.name;
    if (!key) {
      const where = dialect.provider === 'anthropic' ? 'x-api-key (or Authorization: Bearer)' : 'Authorization: Bearer';
      this.#send(res, dialect, { kind: 'authentication', code: GatewayCode.KEY_INVALID, message: presented === undefined ? `no API key: send the gateway key in ${where}` : 'invalid API key', shouldRetry: false });
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
    else res.writeHead(200, { 'content-type': 'application/json' }).end(dialect.modelList(page.models.map((id) => this.#servedModel(id)), page.hasMore));
  }

  #model(req: IncomingMessage, res: ServerResponse, dialect: Dialect, id: string): void {
    if (!this.#authenticate(req, res, dialect)) return;
    if (!this.#served(dialect.provider).includes(id)) {
      this.#send(res, dialect, { kind: 'not_found', code: FailureCode.UNKNOWN_MODEL, message: `model: ${id}`, shouldRetry: false });
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(dialect.model(this.#servedModel(id)));
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

  async #countTokens(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const prepared = await this.#prepare(req, res, anthropic);
    if (!prepared) return;
    const { body } = prepared;
    // What /v1/messages refuses is not counted either: the provider's count_tokens refuses it too.
    const issues = countTokensIssues(body);
    if (issues.length > 0) return this.#send(res, anthropic, invalid(issues));
    // No provider key lives here: the count is the estimate the fleet reserves with, and says so.
    res.writeHead(200, { 'content-type': 'application/json', 'headroom-estimate': 'o200k_base' }).end(JSON.stringify({ input_tokens: estimateInputTokens(body) }));
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
    try {
      handle = await this.producer.enqueue(job);
    } catch (err) {
      return this.#send(res, dialect, fromError(err));
    }
    const ids = { 'headroom-job-id': handle.id, 'headroom-lane': handle.lane };
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
          'headroom-wait-ms': String(Math.round(result.timings.waitMs)),
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
    try {
      // A stream nobody reads past its bound is stopped, not left spending tokens.
      stream = await this.producer.stream(job, { signal: abort.signal, timeoutMs: maxWaitMs + RUN_BOUND_MS, cancelOnTimeout: true });
    } catch (err) {
      if (!abort.signal.aborted) this.#send(res, dialect, fromError(err));
      return;
    }
    const ids = { 'headroom-job-id': stream.id, 'headroom-lane': stream.lane };
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
      'headroom-wait-ms': String(Math.round(start.waitMs)),
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

/** An id for an answer the gateway gives itself, told apart from the providers' (`req_...`) by its prefix. */
function gatewayRequestId(): string {
  return `req_headroom_${randomUUID().replaceAll('-', '')}`;
}

/** Which provider's shape an answer takes where the route does not say (models, unknown paths). */
function dialectOf(req: IncomingMessage, path: string): Dialect {
  if (path.startsWith('/v1/messages')) return anthropic;
  if (path.startsWith('/v1/chat')) return openai;
  if (path.startsWith('/v1/responses')) return openaiResponses;
  return req.headers['anthropic-version'] !== undefined || req.headers['x-api-key'] !== undefined ? anthropic : openai;
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


/** A path segment as the client meant it, or as sent when it is not valid percent-encoding (no such model then). */
function decodedId(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Anthropic's model list pages (`limit`, 1-1000, default 20; `after_id` / `before_id`, ids in the list); OpenAI's list is whole. */
const DEFAULT_PAGE = 20;
const MAX_PAGE = 1_000;

function pageOf(models: readonly string[], query: URLSearchParams, dialect: Dialect): { models: readonly string[]; hasMore: boolean } | { error: { path: string; message: string } } {
  if (dialect.provider !== 'anthropic') return { models, hasMore: false };
  const limitText = query.get('limit');
  const limit = limitText === null ? DEFAULT_PAGE : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) return { error: { path: 'limit', message: `expected an integer from 1 to ${MAX_PAGE}, got "${limitText}"` } };
  const after = query.get('after_id');
  const before = query.get('before_id');
  const at = (id: string, name: string) => {
    const i = models.indexOf(id);
    return i === -1 ? { error: { path: name, message: `no model "${id}" in this list` } } : i;
  };
  if (before !== null) {
    const end = at(before, 'before_id');
    if (typeof end !== 'number') return end;
    return { models: models.slice(Math.max(0, end - limit), end), hasMore: end - limit > 0 };
  }
  const start = after === null ? 0 : at(after, 'after_id');
  if (typeof start !== 'number') return start;
  const from = after === null ? 0 : start + 1;
  return { models: models.slice(from, from + limit), hasMore: from + limit < models.length };
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
