/**
 * @headroom/worker — the Headroom fleet process, for embedding (the `headroom worker` command of
 * @headroom/cli wraps it).
 *
 * ```ts
 * import { loadConfig } from '@headroom/queue';
 * import { startWorker } from '@headroom/worker';
 * const worker = await startWorker({ config: loadConfig('headroom.config.yaml'), redisUrl: process.env.REDIS_URL! });
 * process.once('SIGTERM', async () => process.exit((await worker.close()).drained ? 0 : 1));
 * ```
 */
export { startWorker } from './worker.js';
export type { StartWorkerOptions, RunningWorker, WorkerStopped } from './worker.js';
export type { PressureAdjust } from './shedding/pressure-monitor.js';
export { WorkerMetrics } from './metrics.js';
export { customIdOf, jobIdOfCustomId } from './batch/custom-id.js';
export { MAX_BATCH_REQUEUES } from './batch/job-settler.js';
/** The transport the provider adapters call through (node:http under the SDK): a bench's stand-in for the worker uses it too. */
export { createHttpFetch, IDLE_SOCKET_MS } from './providers/http-fetch.js';
