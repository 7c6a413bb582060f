/**
 * @headroom/worker — the Headroom fleet process, for embedding (the `headroom` CLI wraps it).
 *
 * ```ts
 * import { loadConfig } from '@headroom/queue';
 * import { startWorker } from '@headroom/worker';
 * const worker = await startWorker({ config: loadConfig('headroom.config.yaml'), redisUrl: process.env.REDIS_URL! });
 * process.once('SIGTERM', () => worker.close());
 * ```
 */
export { startWorker } from './worker.js';
export type { StartWorkerOptions, RunningWorker } from './worker.js';
export { WorkerMetrics } from './metrics.js';
export { readFleetStats, WAIT_BUCKETS_MS } from './fleet-stats.js';
export type { FleetStats } from './fleet-stats.js';
export { createLogger } from './logger.js';
export type { Logger } from './logger.js';
