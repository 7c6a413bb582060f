/**
 * Runs one job, stage by stage: plan a model from the fallback ladder and draw its need from the
 * bucket (plan.ts), or wait (plan-wait.ts); make the call (provider-call.ts, stream-call.ts);
 * settle it (settle.ts); then complete the job (completed.ts) or decide what follows the failure
 * (failed-call.ts, retry-policy.ts). Returns an outcome for the dispatcher to apply to the BullMQ
 * job; it never touches the job itself, so it is tested without one (job-runner.test.ts).
 */
import { checkRelay, FailureCode, isStreamed, jobFailure, poolOf, type LlmJob, type RelayCheck } from '@headroom/queue';
import { shedFailure } from '../shedding/shed-decision.js';
import { answered, fromEarlierAttempt } from './completed.js';
import { pastDeadline } from './deadline.js';
import { afterFailure } from './failed-call.js';
import { gatewayGoneFailure } from './gateway-presence.js';
import { ladderOf } from './model-ladder.js';
import { planCall } from './plan.js';
import { PlanWaits } from './plan-wait.js';
import { callProvider } from './provider-call.js';
import { stopped, type JobMeta, type JobProgress, type RunContext, type RunOutcome } from './run-context.js';
import { report, settleCall, settleEndedStream } from './settle.js';

export type { JobMeta, JobProgress, RunContext, RunOutcome } from './run-context.js';
export { JobCancelled } from './run-context.js';
export { COOLDOWN_RESUME_SPREAD_MS } from './plan-wait.js';

export async function runJob(ctx: RunContext, job: LlmJob, meta: JobMeta, signal: AbortSignal): Promise<RunOutcome> {
  const progress: JobProgress = { ...meta.progress };
  const startedAt = ctx.now();
  const waits = new PlanWaits(ctx, job, meta, progress, poolOf(ctx.config, job.request.model));
  const fellBackFrom = new Set<string>();
  const ladder = ladderOf(ctx.config, job);
  const unknown = ladder.filter((m) => !ctx.config.models[m]);
  if (unknown.length === ladder.length) {
    return { kind: 'failed', failure: jobFailure(FailureCode.UNKNOWN_MODEL, `no model of ${JSON.stringify(unknown)} is in the fleet's config`), progress };
  }
  const shed = shedFailure(ctx, job, meta);
  if (shed) return { kind: job.onShed === 'batch' ? 'to_batch' : 'failed', failure: shed, progress };
  // A streamed job run again after its worker died or lost it mid-stream finds that attempt's
  // events in its relay, which refuses a second answer: failed before the provider call, not after
  // it (the call was charged and its answer thrown away). Asked only of a job taken before (a
  // first fetch has no earlier attempt), sent ahead of the first plan's acquire and read once
  // granted, so it adds no round trip; the relay's first write still checks, for an earlier
  // attempt that writes in between. Unanswered (Redis failing), that first write decides.
  // A plain job has no relay, but the same check reads its cancel flag: one its caller cancelled
  // while a worker that then died ran it (the flag is set for a started job; the message went to
  // the dead worker) came back through the stalled check and was called again, in full, for
  // nobody. Asked only after a stall, the one way such a job comes back to a lane.
  const relay: Promise<RelayCheck> | undefined = (isStreamed(job) ? meta.takenBefore : meta.stalled) ? checkRelay(ctx.redis, ctx.config.redis.prefix, meta.id).catch(() => 'open' as const) : undefined;

  try {
    while (true) {
      if (signal.aborted) return stopped(signal, progress, 'before its provider call');
      const late = pastDeadline(job, meta, ctx.now(), 0, undefined, progress);
      if (late) return { kind: 'failed', failure: late, progress };
      // Asked ahead of the acquire and read once granted: the answer mostly comes from this
      // worker's cached read of the gateways (gateway-presence.ts), without a round trip.
      const gatewayGone = job.gateway === undefined ? false : ctx.gateways.gone(job.gateway, startedAt);
      const plan = await planCall(ctx, job, meta, fellBackFrom);
      waits.acquired();
      if (plan.kind === 'never_fits') return { kind: 'failed', failure: jobFailure(FailureCode.NEVER_FITS, plan.message), progress };
      if (plan.kind === 'wait') {
        const outcome = await waits.wait(plan);
        if (outcome) return outcome;
        continue;
      }

      // A grant as a retry of the model, served or never sent, gives its place in the budget back.
      const { model, pool, reservation, retry } = plan;
      const attemptsBefore = progress.attempts;
      const ahead = waits.ahead(pool);
      const relayed = relay === undefined ? 'open' : await relay;
      const orphaned = await gatewayGone;
      if (signal.aborted || ahead || relayed !== 'open' || orphaned) {
        // Granted but never called: the whole reservation goes back, its request too (kept, a
        // pool whose requests bind would lose a call per grant given back), and a retry's place
        // in the budget.
        ctx.bucket.release(reservation).catch((err: Error) => ctx.logger.warn({ err: err.message, pool }, 'bucket refund failed'));
        report(ctx, { pool, model, jobId: meta.id, startedAt: ctx.now(), retry }, undefined);
        if (relayed === 'taken') return await fromEarlierAttempt(ctx, job, meta, progress, signal);
        // Its caller cancelled it (the flag the relay checks) and this worker missed the message.
        if (relayed === 'cancelled') return { kind: 'failed', failure: jobFailure(FailureCode.CANCELLED, 'cancelled by its caller before its provider call'), progress };
        // Its gateway was killed with its client's connection: nobody is left to answer.
        if (orphaned && job.gateway !== undefined) return { kind: 'failed', failure: gatewayGoneFailure(job.gateway, 'before its provider call; no provider call was made'), progress };
        if (!ahead) return stopped(signal, progress, 'before its provider call');
        return waits.behind(pool, ahead);
      }
      waits.calling();
      const call = await callProvider(ctx, job, meta, plan, signal);
      if (call.kind === 'ended') return settleEndedStream(ctx, job, meta, progress, plan, call.streamed, call.startedAt);
      const { res } = call;
      progress.attempts += 1;
      if (!progress.triedModels?.includes(model)) progress.triedModels = [...(progress.triedModels ?? []), model];
      settleCall(ctx, job, meta, plan, res, signal, { startedAt: call.startedAt, endedAt: call.endedAt });
      if (res.ok) return answered(ctx, job, meta, progress, plan, res, { startedAt, callStarted: call.startedAt, callEnded: call.endedAt, firstEventAt: call.firstEventAt });
      if (signal.aborted) return stopped(signal, progress, 'during its provider call');
      const next = await afterFailure(ctx, job, meta, progress, plan, res, { ownCalls: attemptsBefore, endedAt: call.endedAt });
      if (next !== 'fallback') return next;
      fellBackFrom.add(model);
    }
  } finally {
    waits.left();
  }
}
