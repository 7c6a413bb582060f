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
export { startDashboard, BULL_BOARD_PATH } from './dashboard/server.js';
export type { StartDashboardOptions, RunningDashboard } from './dashboard/server.js';
export { DASHBOARD_METRIC_NAMES } from './dashboard/fleet-metrics.js';
export { evaluateAlerts, EMPTY_ALERT_STATE } from './dashboard/alerts.js';
export type { Alert, AlertEvent, AlertRule, AlertSettings, AlertState, Observation } from './dashboard/alerts.js';
export type { AlertWebhookBody } from './dashboard/alert-notifier.js';
export type { Overview } from './dashboard/overview.js';
export { readHeartbeats } from './heartbeat.js';
export type { WorkerHeartbeat, Heartbeats, BreakerBeat } from './heartbeat.js';
export { customIdOf, jobIdOfCustomId } from './batch/custom-id.js';
export { createLogger } from './logger.js';
export type { Logger } from './logger.js';
