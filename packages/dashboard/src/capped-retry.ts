/**
 * Bull Board's "retry" (one job, or every job of a state) done through admission. Bull Board's own
 * handlers call BullMQ's `job.retry()`, which puts any number of finished jobs back into a lane
 * whatever its cap, and sends them all to the provider again; these routes, mounted before Bull
 * Board's, send a job back only when a new job would be admitted (`retryFinishedJob`: settings
 * published, cap, byte cap, tenant max) and count it as unfinished again. A bulk retry stops at the
 * first refusal that would refuse every job after it (the lane full, no settings), skips a job
 * whose tenant is at its max, and answers as Bull Board's does: `{ retried, skipped }`.
 *
 * Nothing is read of a job but its state and the summary admission stored beside it (the tenant).
 * Promote (delayed -> waiting) needs no such route: a delayed job already counts against the cap.
 */
import { type Request, type Response, Router } from 'express';
import { ErrorCode, type HeadroomError, laneKeys, LANES, retryFinishedJob, type Lane } from '@headroom/queue';
import type { Cluster, Redis } from 'ioredis';
import type { LaneQueues } from './fleet-state.js';

const RETRIABLE = new Set(['completed', 'failed']);
const PAGE = 100;

export interface CappedRetryOptions {
  redis: Redis | Cluster;
  prefix: string;
  queues: LaneQueues;
}

function laneOf(name: string | undefined): Lane | undefined {
  return (LANES as readonly string[]).includes(name ?? '') ? (name as Lane) : undefined;
}

/** A refusal as an HTTP answer: backpressure (retry later) is 429, a job not there 404. */
function sendError(res: Response, err: HeadroomError): void {
  const status = err.code === ErrorCode.JOB_NOT_FOUND ? 404 : err.retryable ? 429 : 400;
  res.status(status).json({ error: { code: err.code, message: err.message } });
}

export function cappedRetryRouter(opts: CappedRetryOptions): Router {
  const { redis, prefix, queues } = opts;
  const tenantOf = async (lane: Lane, jobId: string): Promise<string | undefined> => {
    const raw = await redis.hget(`${laneKeys(prefix, lane).jobKeyPrefix}${jobId}`, 'hrSummary');
    try {
      const tenant = raw ? (JSON.parse(raw) as { tenant?: unknown }).tenant : undefined;
      return typeof tenant === 'string' ? tenant : undefined;
    } catch {
      return undefined;
    }
  };
  const router = Router();

  router.put('/api/queues/:queueName/:jobId/retry', async (req: Request<{ queueName: string; jobId: string }>, res, next) => {
    const lane = laneOf(req.params.queueName);
    const queue = lane && queues.get(lane);
    if (!lane || !queue) return next();
    const { jobId } = req.params;
    const state = await queue.getJobState(jobId);
    if (!RETRIABLE.has(state)) {
      res.status(400).json({ error: { code: 'JOB_NOT_RETRIABLE', message: `job ${jobId} is ${state}: only completed and failed jobs are retried` } });
      return;
    }
    const outcome = await retryFinishedJob(redis, prefix, lane, jobId, state as 'completed' | 'failed', await tenantOf(lane, jobId));
    if (outcome === true) res.status(204).end();
    else sendError(res, outcome);
  });

  router.put('/api/queues/:queueName/retry/:queueStatus', async (req: Request<{ queueName: string; queueStatus: string }>, res, next) => {
    const lane = laneOf(req.params.queueName);
    const queue = lane && queues.get(lane);
    if (!lane || !queue) return next();
    const state = req.params.queueStatus;
    if (!RETRIABLE.has(state)) {
      res.status(400).json({ error: { code: 'STATUS_NOT_RETRIABLE', message: `only completed and failed jobs are retried, not ${state}` } });
      return;
    }
    let retried = 0;
    let skipped = 0;
    let from = 0;
    let stop: HeadroomError | undefined;
    // The jobs there now, oldest first: a retried job that finishes again meanwhile is not retried twice.
    const total = (await queue.getJobCounts(state as 'completed' | 'failed'))[state] ?? 0;
    const seen = new Set<string>();
    while (seen.size < total) {
      const ids = (await queue.getRanges([state as 'completed' | 'failed'], from, from + PAGE - 1, true)).filter((id) => !seen.has(id));
      if (ids.length === 0) break;
      for (const id of ids) {
        if (seen.size >= total) break;
        seen.add(id);
        if (stop) {
          skipped += 1;
          continue;
        }
        const outcome = await retryFinishedJob(redis, prefix, lane, id, state as 'completed' | 'failed', await tenantOf(lane, id));
        if (outcome === true) {
          retried += 1;
          continue;
        }
        skipped += 1;
        // The lane full, or no settings: every job after this one would be refused too.
        if (outcome.code === ErrorCode.QUEUE_FULL || outcome.code === ErrorCode.FLEET_UNPUBLISHED) stop = outcome;
      }
      // Retried jobs left the set; the ones still in it are skipped ones.
      from = skipped;
    }
    res.status(200).json({ retried, skipped, ...(stop ? { stoppedBy: { code: stop.code, message: stop.message } } : {}) });
  });

  return router;
}
