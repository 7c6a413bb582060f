/**
 * Whether a waiting job is shed when it reaches a worker: a LOW job (NORMAL too with
 * `shedding.shedNormal`) past its max wait while its pool is under pressure. CRITICAL and HIGH
 * never are (the pressure monitor's `shedsLane` says no for them).
 */
import { FailureCode, jobFailure, poolOf, type JobFailure, type LlmJob } from '@headroom/queue';
import type { JobMeta, RunContext } from '../run/run-context.js';

export function shedFailure(ctx: Pick<RunContext, 'config' | 'pressure' | 'now'>, job: LlmJob, meta: JobMeta): JobFailure | undefined {
  const pool = poolOf(ctx.config, job.request.model);
  if (!ctx.pressure.shedsLane(pool, meta.lane)) return undefined;
  const waited = ctx.now() - meta.enqueuedAt;
  const maxWaitMs = job.maxWaitMs ?? ctx.config.lanes[meta.lane].maxWaitMs;
  if (waited <= maxWaitMs) return undefined;
  const p = ctx.pressure.pressureOf(pool)?.value ?? 1;
  return jobFailure(
    FailureCode.SHED,
    `waited ${Math.round(waited / 1000)} s, past its max wait of ${Math.round(maxWaitMs / 1000)} s, while pool ${pool} is under pressure (${p.toFixed(2)})`,
    ctx.pressure.retryHintMs(pool),
  );
}
