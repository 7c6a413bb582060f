/**
 * `headroom dashboard`: one express app serving
 *   /                 the Headroom page (quota per pool, lanes, 429s, cost, live charts)
 *   /api/overview     the JSON it polls;  /api/recent-jobs  the latest jobs (no prompts)
 *   /admin/queues     Bull Board over every lane
 *   /metrics          Prometheus: fleet gauges read from Redis on scrape
 *   /healthz /readyz  process up / Redis ready (no auth, for probes)
 * and evaluating the alert rules in the background. Everything but the probes needs credentials.
 *
 * ```ts
 * const dash = await startDashboard({ config, redisUrl, env: process.env });
 * console.log(dash.url);
 * await dash.close();
 * ```
 */
import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { Bucket, listen, RedisUnavailableError, asRedisError, createRedis, untilReady, reportOutages, type HeadroomConfig, createLogger, type Logger, throttleParamsOf, within } from '@headroom/queue';
import { AlertNotifier } from './alert-notifier.js';
import { requireAuth, resolveAuth, type DashboardAuth } from './auth.js';
import { hostGuard } from './host-guard.js';
import { bullBoardRouter } from './bull-board.js';
import { boundedRead, closeLaneQueues, openLaneQueues } from './fleet-state.js';
import { DashboardMetrics } from './fleet-metrics.js';
import { History } from './history.js';
import { Monitor } from './monitor.js';
import { readOverview } from './overview.js';
import { poolsOf } from './pools.js';
import { readRecentJobs } from './recent-jobs.js';

export const BULL_BOARD_PATH = '/admin/queues';

export interface StartDashboardOptions {
  config: HeadroomConfig;
  redisUrl: string;
  /** Where credentials and the webhook URL are read from (by the names in config). @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Bind 127.0.0.1, and allow starting without credentials. @default false */
  localOnly?: boolean;
  /** Refuse every write (Bull Board's retry, clean, pause...). @default config.dashboard.readOnly */
  readOnly?: boolean;
  /** Show prompts and completions in Bull Board's job view. @default false (redacted) */
  showPayloads?: boolean;
  /** @default config.dashboard.port (0 = a free port) */
  port?: number;
  /** What chose `port`, named when it cannot be listened on (the CLI's `--port`). @default 'dashboard.port', or 'the port option' when `port` is given */
  portSetting?: string;
  logger?: Logger;
  /** @default Date.now */
  now?: () => number;
  /** For the alert webhook. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** How often bucket levels and lane depths are sampled for the charts. @default 2000 */
  sampleIntervalMs?: number;
}

export interface RunningDashboard {
  url: string;
  port: number;
  host: string;
  readOnly: boolean;
  auth: DashboardAuth['mode'];
  metrics: DashboardMetrics;
  monitor: Monitor;
  close(): Promise<void>;
}

/** The page's static files. tsc does not copy them into dist/, so a build serves them from src/. */
function assetsDir(): string {
  const beside = fileURLToPath(new URL('./assets/', import.meta.url));
  if (existsSync(beside)) return beside;
  return fileURLToPath(new URL('../src/assets/', import.meta.url));
}

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const securityHeaders: RequestHandler = (_req, res, next) => {
  res.set({ 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' });
  next();
};

/** Our own pages run no inline code, so they get a strict CSP; Bull Board's UI is left as it ships. */
const strictCsp: RequestHandler = (_req, res, next) => {
  res.set('content-security-policy', CSP);
  next();
};

export async function startDashboard(opts: StartDashboardOptions): Promise<RunningDashboard> {
  const { config } = opts;
  const env = opts.env ?? process.env;
  const localOnly = opts.localOnly ?? false;
  const readOnly = opts.readOnly ?? config.dashboard.readOnly;
  const auth = resolveAuth(config.dashboard, env, { localOnly });
  const logger = opts.logger ?? createLogger({ name: 'dashboard' });
  const now = opts.now ?? Date.now;
  const prefix = config.redis.prefix;

  // Fails fast while Redis is away (the producer role), and each read is bounded (boundedRead)
  // while Redis stalls: a page shows 503, it never hangs.
  const redis = createRedis(opts.redisUrl, 'producer');
  reportOutages(redis, logger, 'dashboard');
  // Down (REDIS_UNAVAILABLE): starts anyway and /readyz says so. Refusing it (REDIS_REFUSED:
  // password, database, certificate): it would refuse every retry, so the start fails, naming the
  // Redis and why, before it listens.
  try {
    await untilReady(redis, { waitMs: 5_000 });
  } catch (err) {
    if (!(err instanceof RedisUnavailableError)) {
      redis.disconnect();
      throw err;
    }
    logger.warn('redis not ready yet; the dashboard starts anyway and /readyz says so');
  }

  // With the fleet's throttle params, so snapshots carry each model's throttle (read, never charged).
  const bucket = new Bucket(redis, { prefix, throttle: throttleParamsOf(config) });
  const pools = poolsOf(config);
  const queues = openLaneQueues(redis, prefix);
  const history = new History();
  const notifier = new AlertNotifier({
    logger,
    webhookUrl: env[config.dashboard.alerts.webhookUrlEnv] || undefined,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  const monitor = new Monitor({ redis, config, bucket, pools, queues, history, notifier, logger, now, ...(opts.sampleIntervalMs ? { sampleIntervalMs: opts.sampleIntervalMs } : {}) });
  const alerts = () => monitor.firing();
  const metrics = new DashboardMetrics({ redis, config, bucket, pools, queues, alerts, now });

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(securityHeaders);

  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/readyz', async (_req, res) => {
    const ok = redis.status === 'ready' && (await Promise.race([redis.ping().then(() => true, () => false), new Promise<boolean>((r) => setTimeout(() => r(false), 1_000).unref())]));
    res.status(ok ? 200 : 503).json({ ok, redis: redis.status });
  });

  // Before auth: a request for another site's name is refused whoever sends it (DNS rebinding).
  app.use(hostGuard({ localOnly, hostnames: config.dashboard.hostnames }));
  app.use(requireAuth(auth));
  app.use((_req, res, next) => {
    res.set('cache-control', 'no-store');
    next();
  });

  app.get('/metrics', async (_req, res) => {
    const body = await metrics.registry.metrics();
    res.type(metrics.registry.contentType).send(body);
  });
  app.get('/api/overview', strictCsp, async (req, res) => {
    const since = Number(req.query.since);
    const overview = await boundedRead(readOverview({ redis, config, bucket, pools, queues, history, alerts, now }, Number.isFinite(since) ? since : 0), 'the read of the fleet');
    res.json({ ...overview, readOnly });
  });
  app.get('/api/recent-jobs', strictCsp, async (_req, res) => {
    res.json({ jobs: await boundedRead(readRecentJobs(redis, prefix, queues), 'the read of recent jobs') });
  });
  app.use(BULL_BOARD_PATH, bullBoardRouter({ queues, basePath: BULL_BOARD_PATH, readOnly, showPayloads: opts.showPayloads ?? false, headroomPath: '/', redis, prefix }));
  app.use('/assets', strictCsp, express.static(assetsDir(), { index: false, fallthrough: true, maxAge: 0 }));
  app.get('/favicon.ico', (_req, res) => {
    res.status(204).end();
  });
  app.get(['/', '/headroom'], strictCsp, (_req, res) => {
    res.sendFile('index.html', { root: assetsDir() });
  });
  app.use((_req, res) => {
    res.status(404).json({ error: { code: 'NOT_FOUND', message: 'no such route' } });
  });
  const onError: ErrorRequestHandler = (err: unknown, _req, res, _next) => {
    const mapped = asRedisError(err);
    if (mapped instanceof RedisUnavailableError) {
      res.status(503).json({ error: { code: 'REDIS_UNAVAILABLE', message: 'Redis is not reachable' } });
      return;
    }
    if ((err as { status?: unknown }).status === 404) {
      res.status(404).json({ error: { code: 'NOT_FOUND', message: 'no such file' } });
      return;
    }
    logger.error({ err: (err as Error).message }, 'dashboard request failed');
    res.status(500).json({ error: { code: 'INTERNAL', message: 'internal error' } });
  };
  app.use(onError);

  if (!existsSync(assetsDir())) logger.error({ code: 'DASHBOARD_ASSETS_MISSING', dir: assetsDir() }, 'the Headroom page assets are missing from this install; / will answer 404');
  const host = localOnly ? '127.0.0.1' : config.dashboard.host;
  const server = createServer(app);
  const portSetting = opts.portSetting ?? (opts.port === undefined ? 'dashboard.port' : 'the port option');
  try {
    await listen(server, { port: opts.port ?? config.dashboard.port, host, what: 'the dashboard', setting: portSetting });
  } catch (err) {
    // Nothing was served: let go of Redis, so a caller that handles the error is not kept alive.
    await closeLaneQueues(queues);
    redis.disconnect();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
  monitor.start();
  const authMode = auth.mode === 'none' ? 'none' : [auth.basic ? 'basic' : '', auth.token ? 'token' : ''].filter(Boolean).join('+');
  logger.info({ url, host, port, auth: authMode, readOnly, localOnly, webhook: notifier.hasWebhook }, 'dashboard started');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    host,
    readOnly,
    auth: auth.mode,
    metrics,
    monitor,
    close() {
      closing ??= (async () => {
        logger.info({ url }, 'dashboard stopping');
        await monitor.stop();
        await new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        });
        await closeLaneQueues(queues);
        redis.disconnect();
        logger.info({ url }, 'dashboard stopped');
        await within(new Promise<void>((resolve) => logger.flush(() => resolve())), 1_000);
      })();
      return closing;
    },
  };
}
