/**
 * @headroom/worker — the Headroom fleet process, for embedding (the `headroom worker` command of
 * @headroom/cli wraps it).
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
export type { PressureAdjust } from './shedding/pressure-monitor.js';
export { WorkerMetrics } from './metrics.js';
export { customIdOf, jobIdOfCustomId } from './batch/custom-id.js';
