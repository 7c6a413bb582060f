/**
 * @headroom/dashboard — Bull Board over every lane, the Headroom quota page, /metrics and alerts,
 * for a fleet that shares one Redis. The `headroom dashboard` command wraps it.
 *
 * ```ts
 * import { loadConfig } from '@headroom/queue';
 * import { startDashboard } from '@headroom/dashboard';
 * const dash = await startDashboard({ config: loadConfig('headroom.config.yaml'), redisUrl: process.env.REDIS_URL!, env: process.env });
 * console.log(dash.url);   // the quota page; Bull Board under /admin/queues
 * await dash.close();
 * ```
 */
export { startDashboard, BULL_BOARD_PATH } from './server.js';
export type { StartDashboardOptions, RunningDashboard } from './server.js';
export { DASHBOARD_METRIC_NAMES } from './fleet-metrics.js';
export { evaluateAlerts, EMPTY_ALERT_STATE } from './alerts.js';
export type { Alert, AlertEvent, AlertRule, AlertSettings, AlertState, Observation } from './alerts.js';
export type { AlertWebhookBody } from './alert-notifier.js';
export { alertsFiringOnOneRead, openOverviewReader } from './overview.js';
export type { Overview, OverviewReader } from './overview.js';
