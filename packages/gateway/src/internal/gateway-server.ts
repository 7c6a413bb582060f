/**
 * The gateway's HTTP server (node:http, no framework: the path is a handful of routes, and every
 * microsecond here is added to each call): its limits, its heartbeat in the fleet, its start and
 * its drain. What each request gets is the handler's (gateway-handler.ts).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { Producer } from '@headroom/producer-sdk';
import { createLogger, createRedis, parseRedisUrl, untilReady, listen, reportOutages, RedisUnavailableError, Heartbeat, type HeadroomConfig, type Logger, within } from '@headroom/queue';
import { serveMetrics, type MetricsServer } from '@headroom/queue/metrics-server';
import { ClientKeys } from './client-keys.js';
import { GatewayMetrics } from './gateway-metrics.js';
import { GatewayHandler } from './gateway-handler.js';
import { nodeRefusal } from './node-refusals.js';

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

/**
 * How long the stop's last Redis work (the producer's close, the heartbeat's removal) may wait for
 * Redis. A Redis that stops answering without closing the connection (a failover, a network black
 * hole, a paused node) held the stop for as long as the stall lasted: a gateway with nothing in
 * flight, SIGTERMed in a rolling deploy, ran on until the orchestrator killed it. Past this the
 * stop goes on: its heartbeat entry lapses by itself (3 x `gateway.heartbeatMs`).
 */
const STOP_REDIS_MS = 5_000;

export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const { config } = opts;
  // Keys first: a gateway missing one must say so before it touches Redis.
  const keys = ClientKeys.fromConfig(config, opts.env ?? process.env);
  // Then the URL, read as a worker's and a dashboard's is: the Producer's own check below would
  // word a bad `--redis` as one of its options ("invalid config (Producer options)").
  parseRedisUrl(opts.redisUrl);
  const logger = opts.logger ?? createLogger({ name: 'gateway' });
  // Not refused: a pretty-printed body compacts into a smaller job. But an operator who raised the
  // body's limit for images or PDFs alone meets a 413 from the job's check, far from this setting.
  const { maxBodyBytes } = config.gateway;
  const { maxJobBytes } = config.limits;
  if (maxBodyBytes > maxJobBytes) {
    logger.warn({ maxBodyBytes, maxJobBytes }, `config: gateway.maxBodyBytes (${maxBodyBytes}) is above limits.maxJobBytes (${maxJobBytes}): a body between the two is refused 413 PAYLOAD_TOO_LARGE by the job's size check; raise limits.maxJobBytes with it`);
  }
  const producer = new Producer({ redis: opts.redisUrl, prefix: config.redis.prefix, maxJobBytes: config.limits.maxJobBytes });
  const metrics: GatewayMetrics = new GatewayMetrics({ defaultMetrics: config.gateway.metricsPort !== undefined, inFlight: (): number => handler.inFlight });
  const id = `gateway-${randomUUID().slice(0, 8)}`;
  // Its jobs name it once its first beat is written: a worker must find the gateway a job names.
  const handler: GatewayHandler = new GatewayHandler(config, keys, producer, logger, metrics, (): string | undefined => (heartbeat.written ? id : undefined));
  const { headersTimeoutMs, bodyTimeoutMs } = config.gateway;
  const requestTimeoutMs = headersTimeoutMs + bodyTimeoutMs + 1_000;
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
      requestTimeout: requestTimeoutMs,
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
  // that did not arrive in time never reaches the handler: answered from here in a body both SDKs
  // read (node-refusals.ts), logged with its id as the handler logs its own, and closed; never a
  // crash. It was Anthropic's shape whatever the path, with no id and no retry advice. A client
  // that reset its connection has no one left to answer.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const res = answering.get(socket);
    if (!socket.writable || res?.headersSent || err.code === 'ECONNRESET') return socket.destroy();
    const refusal = nodeRefusal(err, { headersTimeoutMs, requestTimeoutMs }, res !== undefined);
    logger.info({ requestId: refusal.requestId, status: refusal.status, code: refusal.code, message: refusal.message }, 'gateway error answer');
    socket.end(refusal.raw);
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
        await metricsServer?.close();
        if (!(await within(Promise.all([producer.close(), heartbeat.stop()]), STOP_REDIS_MS))) {
          logger.warn({ id, waitedMs: STOP_REDIS_MS }, 'Redis did not answer the stop in time: the gateway stops without it (its heartbeat entry lapses by itself)');
        }
        heartbeatRedis.disconnect();
        logger.info({ id, drained }, 'gateway stopped');
        // The last line: let it reach stdout before a caller exits the process.
        await within(new Promise<void>((resolve) => logger.flush(() => resolve())), 1_000);
      })();
      return closing;
    },
  };
}
