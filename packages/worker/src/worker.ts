/**
 * A fleet process: publishes the fleet's lane caps and models, then dispatches jobs through the
 * shared bucket until closed. Scale by starting more of them, on any machine.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Cluster, Redis } from 'ioredis';
import { Bucket, createRedis, duplicateFor, publishFleetSettings, type HeadroomConfig, type Provider, FleetStatsWriter, Heartbeat, createLogger, type Logger } from '@headroom/queue';
import { createBatchApis } from './batch/batch-apis.js';
import { Batcher } from './batch/batcher.js';
import { Breaker } from './run/breaker.js';
import { Dispatcher } from './dispatch/dispatcher.js';
import { WorkerMetrics } from './metrics.js';
import { PressureMonitor } from './shedding/pressure-monitor.js';
import { createAdapters } from './providers/index.js';
import type { ProviderAdapter } from './providers/types.js';
import { TokenEstimator } from './run/token-estimator.js';

export interface StartWorkerOptions {
  config: HeadroomConfig;
  redisUrl: string;
  /** Where API keys are read from (by the names in config). @default process.env */
  env?: NodeJS.ProcessEnv;
  /** @default a random id */
  id?: string;
  logger?: Logger;
  random?: () => number;
  now?: () => number;
}

export interface RunningWorker {
  id: string;
  metrics: WorkerMetrics;
  /** Port of the /metrics server, when `dispatch.metricsPort` is set. */
  metricsPort?: number;
  readonly inFlight: number;
  /** Stops taking jobs; in-flight calls get `graceMs` (default: config) to finish, then are handed back. */
  close(opts?: { graceMs?: number }): Promise<void>;
}

export async function startWorker(opts: StartWorkerOptions): Promise<RunningWorker> {
  const { config } = opts;
  const id = opts.id ?? `worker-${randomUUID().slice(0, 8)}`;
  const logger = opts.logger ?? createLogger({ name: id });
  const metrics = new WorkerMetrics();
  // Keys first: a worker missing one must say so and exit before it touches Redis (it would
  // otherwise republish the fleet's settings, or hang there while Redis is unreachable).
  const adapters = createAdapters(config, opts.env ?? process.env) as Record<Provider, ProviderAdapter>;
  const redis: Redis | Cluster = createRedis(opts.redisUrl, 'worker');
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  await publishFleetSettings(redis, config);

  const now = opts.now ?? Date.now;
  const breaker = new Breaker({
    failureThreshold: config.breaker.failureThreshold,
    openMs: config.breaker.openMs,
    now,
    onTransition: (model, from, to) => {
      metrics.breakerOpen.set({ model }, to === 'closed' ? 0 : 1);
      logger.warn({ event: 'breaker', model, from, to }, `breaker ${to} for ${model}`);
    },
  });
  const stats = new FleetStatsWriter(redis, config.redis.prefix, now);
  stats.start();
  // Its own connection, one that never resends a command after a reconnect: Redis keeps no record
  // of a settle, so a resent one would refund twice (see Bucket).
  const bucketRedis = duplicateFor(redis, 'bucket');
  bucketRedis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error (bucket)'));
  const bucket = new Bucket(bucketRedis, { prefix: config.redis.prefix });
  const pressure = new PressureMonitor(redis, bucket, config, logger);
  pressure.start();
  const dispatcher = new Dispatcher({
    config,
    redisUrl: opts.redisUrl,
    redis,
    workerId: id,
    ctx: {
      config,
      redis,
      bucket,
      adapters,
      estimator: new TokenEstimator(),
      breaker,
      metrics,
      stats,
      pressure,
      logger,
      random: opts.random ?? Math.random,
      tenantWaits: new Map(),
      now,
    },
  });
  await dispatcher.start();
  // The batch router: in every worker, one of them leads (see batch/batcher.ts).
  const batcher = config.batch.enabled
    ? new Batcher({ config, redisUrl: opts.redisUrl, redis, workerId: id, apis: createBatchApis(config, opts.env ?? process.env), metrics, stats, logger, now, random: opts.random ?? Math.random })
    : undefined;
  await batcher?.start();
  // Breakers live in this process only: the heartbeat is how the dashboard and `status` see them.
  const heartbeat = new Heartbeat({
    redis,
    prefix: config.redis.prefix,
    id,
    concurrency: config.dispatch.concurrency,
    inFlight: () => dispatcher.inFlight,
    breakers: () => breaker.snapshot(),
    logger,
    now,
  });
  heartbeat.start();

  let server: Server | undefined;
  let metricsPort: number | undefined;
  if (config.dispatch.metricsPort !== undefined) {
    server = createServer((req, res) => {
      if (req.url === '/metrics') {
        metrics.registry.metrics().then(
          (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
          (err: Error) => res.writeHead(500).end(err.message),
        );
      } else if (req.url === '/healthz' || req.url === '/readyz') {
        const ready = redis.status === 'ready';
        res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: ready, id, inFlight: dispatcher.inFlight }));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server!.listen(config.dispatch.metricsPort, resolve));
    const address = server.address();
    metricsPort = typeof address === 'object' && address ? address.port : undefined;
  }
  logger.info({ id, lanes: Object.keys(config.lanes), concurrency: config.dispatch.concurrency, metricsPort }, 'worker started');

  let closing: Promise<void> | undefined;
  return {
    id,
    metrics,
    ...(metricsPort !== undefined ? { metricsPort } : {}),
    get inFlight() {
      return dispatcher.inFlight;
    },
    close({ graceMs } = {}) {
      closing ??= (async () => {
        logger.info({ id }, 'worker stopping');
        const grace = graceMs ?? config.dispatch.shutdownGraceMs;
        await Promise.all([dispatcher.stop(grace), batcher?.stop(grace)]);
        // Settles and headers still waiting ride on no further acquire: send them now.
        await Promise.all([stats.stop(), pressure.stop(), bucket.close()]);
        await heartbeat.stop();
        await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
        bucketRedis.disconnect();
        redis.disconnect();
        logger.info({ id }, 'worker stopped');
        logger.flush?.();
      })();
      return closing;
    },
  };
}
