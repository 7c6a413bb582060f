/**
 * A fleet process: publishes the fleet's lane caps and models, then dispatches jobs through the
 * shared bucket until closed. Scale by starting more of them, on any machine.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { Redis } from 'ioredis';
import { Bucket, createRedis, publishFleetSettings, type HeadroomConfig, type Provider } from '@headroom/queue';
import { Breaker } from './breaker.js';
import { Dispatcher } from './dispatcher.js';
import { FleetStatsWriter } from './fleet-stats.js';
import { createLogger, type Logger } from './logger.js';
import { WorkerMetrics } from './metrics.js';
import { createAdapters } from './providers/index.js';
import type { ProviderAdapter } from './providers/types.js';
import { TokenEstimator } from './token-estimator.js';

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
  const redis: Redis = createRedis(opts.redisUrl, 'worker');
  redis.on('error', (err) => logger.warn({ err: err.message }, 'redis connection error'));
  await publishFleetSettings(redis, config);

  const now = opts.now ?? Date.now;
  const breaker = new Breaker({ failureThreshold: config.breaker.failureThreshold, openMs: config.breaker.openMs, now });
  const stats = new FleetStatsWriter(redis, config.redis.prefix, now);
  stats.start();
  const adapters = createAdapters(config, opts.env ?? process.env) as Record<Provider, ProviderAdapter>;
  const dispatcher = new Dispatcher({
    config,
    redisUrl: opts.redisUrl,
    redis,
    workerId: id,
    ctx: {
      config,
      bucket: new Bucket(redis, { prefix: config.redis.prefix }),
      adapters,
      estimator: new TokenEstimator(),
      breaker,
      metrics,
      stats,
      logger,
      random: opts.random ?? Math.random,
      now,
    },
  });
  await dispatcher.start();

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
        await dispatcher.stop(graceMs ?? config.dispatch.shutdownGraceMs);
        await stats.stop();
        await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
        redis.disconnect();
        logger.info({ id }, 'worker stopped');
        logger.flush?.();
      })();
      return closing;
    },
  };
}
