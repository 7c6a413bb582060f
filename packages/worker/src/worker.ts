/**
 * A fleet process: publishes the fleet's lane caps and models, then dispatches jobs through the
 * shared bucket until closed. Scale by starting more of them, on any machine.
 *
 * A stop is bounded whatever Redis does: its grace (`dispatch.shutdownGraceMs`) for the calls in
 * flight, then `STOP_TAIL_MS` for them to end and for the worker to hand back what it holds and
 * write its settles, heartbeat and leases. Redis not answering by then, the worker gives up on it
 * (`drained: false`; `headroom worker` exits 1) and leaves the jobs it held to BullMQ's stalled
 * check. A worker that never reached Redis stops at once.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { Bucket, createRedis, untilReady, INTERACTIVE_LANES, promoteRaisedTenantParks, tenantTpmOf, duplicateFor, reportOutages, LaneUpkeep, within, publishFleetSettings, throttleParamsOf, type HeadroomConfig, type Provider, FleetStatsWriter, Heartbeat, heartbeatTtlMs, readHeartbeats, createLogger, type Logger } from '@headroom/queue';
import { serveMetrics, type MetricsServer } from '@headroom/queue/metrics-server';
import { createBatchApis } from './batch/batch-apis.js';
import { Batcher } from './batch/batcher.js';
import { Dispatcher } from './dispatch/dispatcher.js';
import { WorkerMetrics } from './metrics.js';
import { PressureMonitor, type PressureAdjust } from './shedding/pressure-monitor.js';
import { createAdapters } from './providers/index.js';
import type { ProviderAdapter } from './providers/types.js';
import { GatewayPresence } from './run/gateway-presence.js';
import { LimitNotices } from './run/limit-notices.js';
import { PoolHolds } from './run/pool-holds.js';
import { PromptCacheMemory } from './run/prompt-cache-memory.js';
import { RelayingJobs } from './run/relaying-jobs.js';
import { TenantWaits } from './run/tenant-waits.js';
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
  /**
   * Stops the worker when aborted, as `close()` does, also while it is still starting (waiting
   * for an unreachable Redis, it would otherwise never get to stop): `startWorker` then resolves
   * with the worker already stopping, and its `close()` tells how the stop went.
   */
  signal?: AbortSignal;
}

/** How a stop went. */
export interface WorkerStopped {
  /**
   * True when Redis answered the whole stop: every job the worker held ended or went back to its
   * lane, and its settles, heartbeat and leases were written. False when it did not answer within
   * the grace plus `STOP_TAIL_MS` (5 s), or never answered this worker: the jobs it held (if any)
   * are left to BullMQ's stalled check, which puts them back in their lanes once their locks lapse
   * (`dispatch.lockMs`) and Redis is back; its unsent settles are dropped (their calls keep their
   * full charge).
   */
  drained: boolean;
}

export interface RunningWorker {
  id: string;
  metrics: WorkerMetrics;
  /** Port of the /metrics server, when `dispatch.metricsPort` is set. */
  metricsPort?: number;
  readonly inFlight: number;
  /**
   * Stops taking jobs; in-flight calls get `graceMs` (default: config) to finish, then are handed
   * back. Resolves once stopped, in at most `graceMs` + 5 s whatever Redis does.
   */
  close(opts?: { graceMs?: number }): Promise<WorkerStopped>;
}

/**
 * How long past its grace a stop waits for Redis: calls aborted when the grace ends need a moment
 * to end and hand their jobs back. Orchestrators' stop periods keep this margin over the grace
 * (infra/: 45 s for a 30 s grace).
 */
export const STOP_TAIL_MS = 5_000;

export async function startWorker(opts: StartWorkerOptions): Promise<RunningWorker> {
  const { config } = opts;
  const id = opts.id ?? `worker-${randomUUID().slice(0, 8)}`;
  const logger = opts.logger ?? createLogger({ name: id });
  const metrics = new WorkerMetrics();
  const env = opts.env ?? process.env;
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  // Keys first: a worker missing one must say so and exit before it touches Redis (it would
  // otherwise republish the fleet's settings, or hang there while Redis is unreachable).
  const adapters = createAdapters(config, env) as Record<Provider, ProviderAdapter>;
  if (config.breaker) logger.warn({ breaker: config.breaker }, 'config: breaker is retired and ignored; the fleet-wide throttle (throttle, retry.budget) replaces it');
  /** What the probes say until the parts exist: alive, not ready. */
  let probe: () => { ready: boolean; body: Record<string, unknown> } = () => ({ ready: false, body: { alive: true, ready: false, id } });
  // The probes' server listens before anything touches Redis: an orchestrator's liveness probe
  // must find a worker that waits for a Redis outage to end alive (restarting it would not bring
  // Redis back), and a port in use is a config mistake to refuse before the worker joins the fleet.
  const { metricsPort } = config.dispatch;
  const server: MetricsServer | undefined =
    metricsPort === undefined
      ? undefined
      : await serveMetrics('worker', { ...config.dispatch, metricsPort }, { env, logger, registry: metrics.registry, alive: true, health: () => probe() });

  // Every part is built up front (no round trip in a constructor), so a stop knows them all,
  // whatever point the start had reached.
  const redis: Redis | Cluster = createRedis(opts.redisUrl, 'worker');
  reportOutages(redis, logger, 'main');
  // Its own connection, one that never resends a command after a reconnect: Redis keeps no record
  // of a settle, so a resent one would refund twice (see Bucket).
  const bucketRedis = duplicateFor(redis, 'bucket');
  reportOutages(bucketRedis, logger, 'bucket');
  // Admission fails closed without the settings: publish them again whenever they go missing (a
  // Redis restarted without persistence, a FLUSHALL), and reconcile the lanes' admission counts.
  const upkeep = new LaneUpkeep({ redis, config, logger, holder: id });
  const stats = new FleetStatsWriter(redis, config.redis.prefix, now);
  // The throttle and retry budget are checked in the bucket's own script (one round trip per call).
  const bucket = new Bucket(bucketRedis, { prefix: config.redis.prefix, throttle: throttleParamsOf(config) });
  // Told in each beat: a rerun following one of these jobs' relay learns when its call has ended.
  const relaying = new RelayingJobs();
  const pressure = new PressureMonitor({ redis, bucket, config, logger, holder: id, ...(opts.pressure ? { adjust: opts.pressure } : {}) });
  const dispatcher = new Dispatcher({
    config,
    redisUrl: opts.redisUrl,
    redis,
    workerId: id,
    ctx: {
      config,
      workerId: id,
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
      random,
      tenantWaits: new TenantWaits(),
      poolHolds: new PoolHolds(),
      limitNotices: new LimitNotices(logger),
      gateways: new GatewayPresence(() => readHeartbeats(redis, config.redis.prefix, 'gateway'), now, heartbeatTtlMs(config.gateway.heartbeatMs)),
      relaying,
      now,
    },
  });
  // The batch router: in every worker, one of them leads (see batch/batcher.ts).
  const batcher = config.batch.enabled
    ? new Batcher({ config, redisUrl: opts.redisUrl, redis, workerId: id, apis: createBatchApis(config, env), metrics, stats, logger, now, random })
    : undefined;
  // Throttles live in Redis, fleet-wide: the dashboard and `status` read them there.
  const heartbeat = new Heartbeat({
    redis,
    prefix: config.redis.prefix,
    id,
    concurrency: config.dispatch.concurrency,
    inFlight: () => dispatcher.inFlight,
    relaying: () => relaying.ids(),
    logger,
    now,
  });
  /** Redis has answered this worker: until then it took nothing, wrote nothing, started nothing. */
  let reachedRedis = false;
  let beating = false;
  let stopAsked = false;
  /** Started and not stopping: ready for work while Redis is up. */
  let running = false;
  probe = () => {
    const ready = running && !stopAsked && redis.status === 'ready';
    return { ready, body: { alive: true, ready, id, redis: redis.status, inFlight: dispatcher.inFlight } };
  };

  const start = async (): Promise<void> => {
    // A Redis that refuses this worker (password, database, certificate) would refuse it on every
    // retry: fail the start, naming it. One that is down is waited for.
    await untilReady(redis);
    await publishFleetSettings(redis, config);
    reachedRedis = true;
    await bringBackRaisedTenantParks(redis, config, logger);
    // A stop asked for meanwhile waits for this to return: nothing more is started.
    if (stopAsked) return;
    upkeep.start();
    stats.start();
    pressure.start();
    await dispatcher.start();
    if (stopAsked) return;
    await batcher?.start();
    if (stopAsked) return;
    heartbeat.start();
    beating = true;
    running = true;
  };
  /** Settles with the start's error, or undefined; never rejects. */
  const started: Promise<unknown> = start().then(() => undefined, (err: unknown) => err);

  /** What a stop does while Redis answers: what started, stopped in order. */
  const stopInOrder = async (graceMs: number): Promise<void> => {
    await started;
    await Promise.all([dispatcher.stop(graceMs), batcher?.stop(graceMs)]);
    // Settles and headers still waiting ride on no further acquire: send them now.
    await Promise.all([stats.stop(), pressure.stop(), bucket.close(), upkeep.stop()]);
    if (beating) await heartbeat.stop();
    await server?.close();
  };

  /** What a stop does once it gives up on Redis: stop every timer and cut every connection, waiting on nothing. */
  const halt = (): void => {
    dispatcher.halt();
    batcher?.halt();
    for (const part of [stats, pressure, upkeep, heartbeat]) void part.stop().catch(() => {});
    void server?.close().catch(() => {});
    bucketRedis.disconnect();
    redis.disconnect();
  };

  let closing: Promise<WorkerStopped> | undefined;
  const close = (graceMs?: number): Promise<WorkerStopped> => {
    closing ??= (async () => {
      stopAsked = true;
      logger.info({ id }, 'worker stopping');
      const grace = graceMs ?? config.dispatch.shutdownGraceMs;
      let drained = false;
      if (!reachedRedis) {
        logger.warn({ id }, 'worker stopping before Redis ever answered it: it took no job');
      } else {
        let failed: Error | undefined;
        const inOrder = stopInOrder(grace).catch((err: Error) => {
          failed = err;
          throw err;
        });
        drained = await within(inOrder, grace + STOP_TAIL_MS);
        if (failed) logger.error({ id, err: failed.message }, 'the stop failed: jobs this worker held are left to the stalled check, which puts them back in their lanes once their locks lapse');
        else if (!drained) logger.error({ id, waitedMs: grace + STOP_TAIL_MS }, 'Redis did not answer the stop in time: jobs this worker held are left to the stalled check, which puts them back in their lanes once their locks lapse');
      }
      if (drained) {
        bucketRedis.disconnect();
        redis.disconnect();
      } else halt();
      logger.info({ id, drained }, 'worker stopped');
      // The line above is the last: let it reach stdout before a caller exits the process.
      await within(new Promise<void>((resolve) => logger.flush(() => resolve())), 1_000);
      return { drained };
    })();
    return closing;
  };

  const stopped = new Promise<void>((resolve) => {
    if (!opts.signal) return;
    const onAbort = () => {
      void close();
      resolve();
    };
    if (opts.signal.aborted) onAbort();
    else opts.signal.addEventListener('abort', onAbort, { once: true });
  });
  const failure = await Promise.race([started, stopped]);
  if (failure !== undefined && !stopAsked) {
    // A start that failed (a Redis that refuses this worker, or too old) stops what it had started.
    await close();
    throw failure;
  }
  if (!stopAsked) logger.info({ id, lanes: Object.keys(config.lanes), concurrency: config.dispatch.concurrency, metricsPort: server?.port }, 'worker started');

  return {
    id,
    metrics,
    ...(server ? { metricsPort: server.port } : {}),
    get inFlight() {
      return dispatcher.inFlight;
    },
    close: ({ graceMs } = {}) => close(graceMs),
  };
}

/**
 * Jobs parked behind a tenant quota lower than this worker's config gives the tenant (the fleet
 * restarted with it raised) come back now, not after the old quota's spacing: only the worker
 * that parked them would have brought them back early, and it is gone. A failure leaves them to
 * their parks' end.
 */
async function bringBackRaisedTenantParks(redis: Redis | Cluster, config: HeadroomConfig, logger: Logger): Promise<void> {
  const quotaOf = (tenant: string) => tenantTpmOf(config, tenant);
  for (const lane of INTERACTIVE_LANES) {
    try {
      const promoted = await promoteRaisedTenantParks(redis, config.redis.prefix, lane, quotaOf);
      if (promoted > 0) logger.info({ lane, promoted }, "brought back jobs parked behind a tenant quota this worker's config raised");
    } catch (err) {
      logger.warn({ lane, err: (err as Error).message }, 'could not look for jobs parked behind a raised tenant quota; they come back when their parks end');
    }
  }
}
