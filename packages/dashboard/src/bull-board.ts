/**
 * Bull Board over every lane, as an express router to mount at `basePath`.
 *
 * - Read-only mode is enforced three times over, because a hidden button is not a control: the
 *   adapters' `readOnlyMode`, Bull Board's `before` hook, and a middleware refusing every
 *   non-GET request.
 * - Adding a job and editing a job's data are always refused: both would bypass admission (the
 *   lane caps) and job validation, and an edit would write the redacted view back.
 * - Retrying finished jobs goes through admission (capped-retry.ts): a full lane refuses them.
 *   Promote needs nothing of the kind: a delayed job already counts against its lane's cap.
 * - Prompts and completions are redacted in the job view unless `showPayloads` is set.
 * - `showWorkers: false` drops the `CLIENT LIST` per lane Bull Board would run on every poll;
 *   the Headroom page lists workers from their heartbeats instead.
 * - Its reads are bounded as ours are while Redis stalls (`boundedBoardReads`).
 * - Its page asks Google Fonts for its typefaces; the link is cut, so the dashboard makes no
 *   request to an outside host (it works offline and leaks nothing) and falls back to the
 *   browser's sans-serif and monospace fonts.
 */
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Router, type RequestHandler } from 'express';
import type { Cluster, Redis } from 'ioredis';
import { cappedRetryRouter } from './capped-retry.js';
import { FLEET_READ_WAIT_MS, type LaneQueues } from './fleet-state.js';
import { redactJobData, redactResult } from './payload-redaction.js';

const LANE_DESCRIPTIONS: Record<string, string> = {
  critical: 'CRITICAL: served first, never shed',
  high: 'HIGH: never shed',
  normal: 'NORMAL: delayed under pressure, not shed',
  low: 'LOW: shed first under pressure',
  batch: "BATCH: no deadline, sent to the providers' batch APIs",
};

/** Bull Board routes that would write jobs around Headroom's admission and validation. */
export const ALWAYS_REFUSED_ROUTES: ReadonlySet<string> = new Set(['/api/queues/:queueName/add', '/api/queues/:queueName/:jobId/update-data']);

/** Bull Board's page links a stylesheet on a host of Google's. */
const OUTSIDE_FONTS = /<link[^>]+href="https:\/\/fonts\.(googleapis|gstatic)\.com[^>]*>\s*/g;

/** Cuts links to outside font hosts out of the HTML Bull Board renders. */
const offlinePage: RequestHandler = (_req, res, next) => {
  const send = res.send.bind(res);
  res.send = (body?: unknown) => send(typeof body === 'string' && body.includes('fonts.') ? body.replace(OUTSIDE_FONTS, '') : body);
  next();
};

/**
 * Bull Board's reads (its page polls `GET /api/queues`) wait on Redis as the Headroom page's did: a
 * Redis that stops answering without closing the connection held them for the whole stall, its
 * page spinning. Past `FLEET_READ_WAIT_MS` the request is answered 503 `REDIS_UNAVAILABLE`, as
 * ours are, and Bull Board's own late answer is dropped (sending it then would throw: headers
 * sent). Writes are left to finish: a 503 would not say whether Redis applied them.
 */
export const boundedBoardReads: RequestHandler = (req, res, next) => {
  if (req.method !== 'GET' || !req.path.startsWith('/api/')) return next();
  const timer = setTimeout(() => {
    if (res.headersSent) return;
    res.status(503).json({ error: { code: 'REDIS_UNAVAILABLE', message: 'Redis is not reachable' } });
    const dropped = () => res;
    res.status = dropped;
    res.json = dropped;
    res.send = dropped;
  }, FLEET_READ_WAIT_MS);
  res.once('close', () => clearTimeout(timer));
  next();
};

/** Refuses writes before they reach Bull Board: 403 with a stable code. */
export const refuseWrites: RequestHandler = (req, res, next) => {
  if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return next();
  res.status(403).json({ error: { code: 'READ_ONLY', message: 'this dashboard is read-only' } });
};

export interface BullBoardOptions {
  queues: LaneQueues;
  basePath: string;
  readOnly: boolean;
  /** Show prompts and completions in the job view. @default false */
  showPayloads?: boolean;
  /** Linked from Bull Board's menu. */
  headroomPath: string;
  /** For retries through admission. */
  redis: Redis | Cluster;
  prefix: string;
}

export function bullBoardRouter(opts: BullBoardOptions): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(opts.basePath);
  const adapters = [...opts.queues.entries()].map(([lane, queue]) => {
    const adapter = new BullMQAdapter(queue, {
      readOnlyMode: opts.readOnly,
      allowRetries: !opts.readOnly,
      displayName: lane.toUpperCase(),
      description: LANE_DESCRIPTIONS[lane] ?? lane,
    });
    if (!opts.showPayloads) {
      adapter.setFormatter('data', redactJobData);
      adapter.setFormatter('returnValue', redactResult);
    }
    return adapter;
  });
  createBullBoard({
    queues: adapters,
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'Headroom',
        showWorkers: false,
        sortQueues: false,
        hideDocsLink: true,
        miscLinks: [{ text: 'Headroom quota', url: opts.headroomPath }],
      },
      handlerHooks: {
        before: ({ method, route }) => {
          if (ALWAYS_REFUSED_ROUTES.has(route)) {
            return { allow: false, status: 403, message: 'enqueue with the producer SDK: Bull Board would bypass admission and validation' };
          }
          if (opts.readOnly && method !== 'get') return { allow: false, status: 403, message: 'this dashboard is read-only' };
          return { allow: true };
        },
      },
    },
  });
  const router = Router();
  if (opts.readOnly) router.use(refuseWrites);
  else router.use(cappedRetryRouter({ redis: opts.redis, prefix: opts.prefix, queues: opts.queues }));
  router.use(boundedBoardReads);
  router.use(offlinePage);
  router.use(serverAdapter.getRouter() as RequestHandler);
  return router;
}
