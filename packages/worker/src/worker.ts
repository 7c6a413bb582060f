/**
 * A fleet process: publishes the fleet's lane caps and models, then dispatches jobs through the
 * shared bucket until closed. Scale by starting more of them, on any machine.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { Bucket, createRedis, duplicateFor, reportOutages, LaneUpkeep, publishFleetSettings, throttleParamsOf, type HeadroomConfig, type Provider, FleetStatsWriter, Heartbeat, createLogger, type Logger } from '@headroom/queue';
import { serveMetrics, type MetricsServer } from '@headroom/queue/metrics-server';
import { createBatchApis } from './batch/batch-apis.js';
import { Batcher } from './batch/batcher.js';
import { Dispatcher } from './dispatch/dispatcher.js';
import { WorkerMetrics } from './metrics.js';
import { PressureMonitor, type PressureAdjust } from './shedding/pressure-monitor.js';
import { createAdapters } from './providers/index.js';
import type { ProviderAdapter } from './providers/types.js';
import { LimitNotices } from './run/limit-notices.js';
import { PoolHolds } from './run/pool-holds.js';
import { PromptCacheMemory } from './run/prompt-cache-memory.js';
import { OutageEvidence } from './run/outage-evidence.js';
import { ThrottleStates } from './run/throttle-states.js';
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
  /** Adjusts each pool's computed pressure before the worker acts on it. @default the identity */
  pressure?: PressureAdjust;
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
  reportOutages(redis, logger, 'main');
  await publishFleetSettings(redis, config);
  // Admission fails closed without the settings: publish them again whenever they go missing (a
  // Redis restarted without persistence, a FLUSHALL), and reconcile the lanes' admission counts.
  const upkeep = new LaneUpkeep({ redis, config, logger });
  upkeep.start();

  const now = opts.now ?? Date.now;
  if (config.breaker) logger.warn({ breaker: config.breaker }, 'config: breaker is retired and ignored; the fleet-wide throttle (throttle, retry.budget) replaces it');
  const stats = new FleetStatsWriter(redis, config.redis.prefix, now);
  stats.start();
  // Its own connection, one that never resends a command after a reconnect: Redis keeps no record
  // of a settle, so a resent one would refund twice (see Bucket).
  const bucketRedis = duplicateFor(redis, 'bucket');
  reportOutages(bucketRedis, logger, 'bucket');
  // The throttle and retry budget are checked in the bucket's own script (one round trip per call).
  const bucket = new Bucket(bucketRedis, { prefix: config.redis.prefix, throttle: throttleParamsOf(config) });
  const pressure = new PressureMonitor({ redis, bucket, config, logger, holder: id, ...(opts.pressure ? { adjust: opts.pressure } : {}) });
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
      throttles: new ThrottleStates(now, config.throttle.probeIntervalMs),
      outages: new OutageEvidence(),
      promptCache: new PromptCacheMemory(now),
      metrics,
      stats,
      pressure,
      logger,
      random: opts.random ?? Math.random,
      tenantWaits: new Map(),
      poolHolds: new PoolHolds(),
      limitNotices: new LimitNotices(logger),
      now,
    },
  });
  await dispatcher.start();
  // The batch router: in every worker, one of them leads (see batch/batcher.ts).
  const batcher = config.batch.enabled
    ? new Batcher({ config, redisUrl: opts.redisUrl, redis, workerId: id, apis: createBatchApis(config, opts.env ?? process.env), metrics, stats, logger, now, random: opts.random ?? Math.random })
    : undefined;
  await batcher?.start();
  // Throttles live in Redis, fleet-wide: the dashboard and `status` read them there.
  const heartbeat = new Heartbeat({
    redis,
    prefix: config.redis.prefix,
    id,
    concurrency: config.dispatch.concurrency,
    inFlight: () => dispatcher.inFlight,
    logger,
    now,
  });
  heartbeat.start();

  const { metricsPort: port } = config.dispatch;
  const server: MetricsServer | undefined =
    port === undefined
      ? undefined
      : await serveMetrics('worker', { ...config.dispatch, metricsPort: port }, {
          env: opts.env ?? process.env,
          logger,
          registry: metrics.registry,
          health: () => ({ ready: redis.status === 'ready', body: { ok: redis.status === 'ready', id, inFlight: dispatcher.inFlight } }),
        });
  const metricsPort = server?.port;
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
        await Promise.all([stats.stop(), pressure.stop(), bucket.close(), upkeep.stop()]);
        await heartbeat.stop();
        await server?.close();
        bucketRedis.disconnect();
        redis.disconnect();
        logger.info({ id }, 'worker stopped');
        logger.flush?.();
      })();
      return closing;
    },
  };
}
