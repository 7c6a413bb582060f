/**
 * What the leader does with one claim once it is due, one step per call (`next`):
 *
 * - open        submit: the intent is written under the leader's fence BEFORE the provider is
 *               asked (the local deadline starts before the intent's Redis time is read, so ours
 *               always ends before the one a later leader computes), then the batch id is recorded;
 * - submitting  find the batch of an unanswered submission; resubmit only once surely not made;
 * - submitted   poll, and when the batch has ended settle every job from its own entry.
 *
 * The leader's loop (batcher.ts) decides when; this file decides what.
 */
import { Job, type Worker as BullWorker } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { FailureCode, jobFailure, parkBatchJobs, type HeadroomConfig, type JobFailure, type LlmJob, type Logger } from '@headroom/queue';
import type { BatchApi, BatchEntry, BatchStatus } from './batch-api.js';
import type { BatchApis } from './batch-apis.js';
import type { BatchMetrics } from './batch-metrics.js';
import { type ClaimRecord, type ClaimStore, phaseOf } from './claim-store.js';
import { customIdMap, customIdOf } from './custom-id.js';
import { type JobFate, type SettleContext, settleJob } from './job-settler.js';
import type { LeaderLease } from './leader-lease.js';
import { mapLimited, TaskPool } from './task-pool.js';

/** A claim as the leader holds it: its record, plus when and whether to act on it. */
export interface LiveClaim extends ClaimRecord {
  /** Local time of the claim's next step (submit, find, poll). */
  nextAt: number;
  /** Ready to submit: full, waited T, or inherited from an earlier leader. */
  due: boolean;
  /** Local time our own submit call came back; unset when the intent may be another leader's. */
  sendEndedAt?: number;
  busy: boolean;
  /** Requests of a submission this leader is making, from the moment it is counted until it ends. */
  sendingCount?: number;
  /** Local time since which every step of this claim has thrown (unset after one that did not). */
  failingSince?: number;
}

export interface ClaimStepsDeps {
  config: HeadroomConfig;
  logger: Logger;
  apis: BatchApis;
  store: ClaimStore;
  metrics: BatchMetrics;
  lane(): BullWorker;
  /** Command connection: the jobs' park marks, beside the claims. */
  redis: Redis | Cluster;
  lease(): LeaderLease;
  settleContext(): SettleContext;
  now(): number;
  redisTimeMs(): Promise<number>;
  /** Submissions in flight, aborted when the worker stops. */
  inflight: Set<AbortController>;
  /** Every claim the leader holds. */
  claims(): Iterable<LiveClaim>;
  /** The claim is finished and its records are gone. */
  dropClaim(claimId: string): void;
  /** Redis disagrees with the leader's view (a second batch for a claim): reload it. */
  reload(): void;
}

/** How long after a submit's end its batch may take to show in the provider's list. */
const FIND_GRACE_MS = 5_000;
/**
 * Both providers end a batch within 24 h of its creation (its requests then expire), and keep its
 * results readable for weeks after. A submitted batch that still cannot be read 6 h past that,
 * after 6 h of nothing but failures, never will be (deleted, or under a key of another workspace
 * or organization): its jobs go back to the lane, as a batch's silence about them sends them,
 * instead of staying parked for good. Six hours, not less: an outage of the provider's batch API
 * around a batch's end must not send its jobs (paid for, their results waiting) out again.
 */
export const BATCH_WINDOW_MS = 24 * 3600_000;
export const UNREADABLE_GIVE_UP_MS = 6 * 3600_000;
export const SETTLE_CONCURRENCY = 16;
/** How soon a submission held back behind another of its count looks again. */
const COUNT_BUSY_RETRY_MS = 250;

export class ClaimSteps {
  constructor(private readonly d: ClaimStepsDeps) {}

  next(claim: LiveClaim): Promise<void> {
    const phase = phaseOf(claim);
    if (phase === 'open') return this.submit(claim);
    if (phase === 'submitting') return this.find(claim);
    return this.poll(claim);
  }

  private async submit(claim: LiveClaim): Promise<void> {
    const { config } = this.d;
    const lane = this.d.lane();
    const api = this.d.apis[claim.provider];
    if (!api) return this.failClaim(claim, jobFailure(FailureCode.PROVIDER_REJECTED, `no batch API for "${claim.provider}": its API key is not set`));
    // Most often the count sent is the claim's size: a claim held back looks again without reading its jobs.
    if (api.findsByCount && this.countInFlight(claim, claim.jobIds.size)) {
      claim.nextAt = this.d.now() + COUNT_BUSY_RETRY_MS;
      return;
    }
    const ids = [...claim.jobIds];
    const jobs = await mapLimited(ids, SETTLE_CONCURRENCY, (id) => Job.fromId(lane, id));
    const present = jobs.filter((j): j is Job => j !== undefined && !j.finishedOn);
    const presentIds = new Set(present.map((j) => j.id!));
    const gone = ids.filter((id) => !presentIds.has(id));
    // Still ours? A job whose lock lapsed went back to the lane and must not go out twice; one
    // cancelled is gone. Those still ours are marked as sent in the same call: from here no cancel
    // removes them (batch-park-1.lua), so none is cancelled after it went into the batch.
    const lost = new Set(present.length > 0 ? await parkBatchJobs(this.d.redis, config.redis.prefix, [...presentIds], claim.token, config.batch.parkLockMs, { sending: true }) : []);
    if (gone.length + lost.size > 0) await this.forget(claim, [...gone, ...lost]);
    const sending = present.filter((j) => !lost.has(j.id!));
    if (sending.length === 0) {
      await this.d.store.remove(claim);
      this.d.dropClaim(claim.id);
      return;
    }
    const entries: BatchEntry[] = sending.map((j) => ({ customId: customIdOf(claim.provider, j.id!), request: (j.data as LlmJob).request }));
    // Checked and marked with no await between: two steps of this leader cannot both pass.
    if (api.findsByCount && this.countInFlight(claim, entries.length)) {
      claim.nextAt = this.d.now() + COUNT_BUSY_RETRY_MS;
      return;
    }
    claim.sendingCount = entries.length;
    try {
      await this.send(claim, api, entries);
    } finally {
      delete claim.sendingCount;
    }
  }

  /**
   * Another claim of this provider whose batch of `count` requests may exist unrecorded: one being
   * sent, or one whose answer never came (`submitting`), inherited ones included. Its `find` and
   * ours could each take the other's batch (both prove not theirs at settlement, and every job of
   * both goes out again).
   */
  private countInFlight(claim: LiveClaim, count: number): boolean {
    for (const other of this.d.claims()) {
      if (other === claim || other.provider !== claim.provider) continue;
      if (other.sendingCount === count || (phaseOf(other) === 'submitting' && (other.intentCount ?? other.jobIds.size) === count)) return true;
    }
    return false;
  }

  private async send(claim: LiveClaim, api: BatchApi, entries: BatchEntry[]): Promise<void> {
    const { config, logger } = this.d;
    // The local clock starts before the intent's Redis time is read, so our own deadline always
    // falls before the one a later leader computes from the intent.
    const started = this.d.now();
    const intentAt = await this.d.redisTimeMs();
    const fenced = await this.d.lease().fenced((tx) => this.d.store.writeIntent(tx, claim.id, intentAt, entries.length));
    if (!fenced) return; // deposed: the next leader owns this claim now
    claim.intentAt = intentAt;
    claim.intentCount = entries.length;
    delete claim.sendEndedAt;
    const abort = new AbortController();
    this.d.inflight.add(abort);
    let outcome: Awaited<ReturnType<BatchApi['submit']>>;
    try {
      outcome = await api.submit({
        claimId: claim.id,
        model: claim.model,
        ...(claim.api ? { api: claim.api } : {}),
        entries,
        ...(claim.fileId ? { fileId: claim.fileId } : {}),
        onFileUploaded: async (fileId) => {
          claim.fileId = fileId;
          await this.d.store.setFileId(claim.id, fileId);
        },
        timeoutMs: Math.max(1, config.batch.submitTimeoutMs - (this.d.now() - started)),
        signal: abort.signal,
      });
    } finally {
      this.d.inflight.delete(abort);
    }
    claim.sendEndedAt = this.d.now();
    switch (outcome.kind) {
      case 'created':
        await this.recordSubmitted(claim, api, outcome.batchId, 'submitted');
        return;
      case 'rejected':
        this.d.metrics.batches.inc({ provider: claim.provider, model: claim.model, event: 'rejected' });
        logger.error({ claim: claim.id, model: claim.model, failureCode: outcome.failure.code, reason: outcome.failure.message }, 'batch refused by the provider; failing its jobs');
        return this.failClaim(claim, outcome.failure);
      case 'retry':
        await this.d.store.clearIntent(claim.id);
        delete claim.intentAt;
        delete claim.intentCount;
        claim.nextAt = this.d.now() + outcome.afterMs;
        logger.warn({ claim: claim.id, model: claim.model, retryInMs: outcome.afterMs, reason: outcome.reason }, 'batch not accepted yet; retrying');
        return;
      case 'uncertain':
        claim.nextAt = this.d.now() + FIND_GRACE_MS;
        logger.warn({ claim: claim.id, model: claim.model, reason: outcome.reason }, 'batch submission unanswered; looking for it before any resubmission');
        return;
    }
  }

  /** A `submitting` claim: is there a batch for its intent? Resubmit only once surely not. */
  private async find(claim: LiveClaim): Promise<void> {
    const { config, logger } = this.d;
    const api = this.d.apis[claim.provider];
    if (!api) return this.failClaim(claim, jobFailure(FailureCode.PROVIDER_REJECTED, `no batch API for "${claim.provider}": its API key is not set`));
    // Recorded meanwhile (by a submit that was slower than a reload of the claims)?
    const recorded = await this.d.store.batchIdOf(claim.id);
    if (recorded !== undefined) {
      claim.batchId = recorded;
      claim.nextAt = this.d.now();
      return;
    }
    const found = await api.find({
      claimId: claim.id,
      intentAt: claim.intentAt!,
      count: claim.intentCount ?? claim.jobIds.size,
      ...(claim.fileId ? { fileId: claim.fileId } : {}),
      knownBatchIds: await this.d.store.knownBatchIds(),
      windowMs: config.batch.submitTimeoutMs,
    });
    if (found) {
      logger.warn({ claim: claim.id, batchId: found }, 'found the batch of an unanswered submission');
      await this.recordSubmitted(claim, api, found, 'found');
      return;
    }
    // Our own call is over: the batch would be listed by now. Another leader's call may still be
    // in flight until its deadline, which the intent's Redis time bounds.
    const waitMs =
      claim.sendEndedAt !== undefined
        ? claim.sendEndedAt + FIND_GRACE_MS - this.d.now()
        : claim.intentAt! + config.batch.submitTimeoutMs + FIND_GRACE_MS - (await this.d.redisTimeMs());
    if (waitMs > 0) {
      claim.nextAt = this.d.now() + waitMs;
      return;
    }
    logger.warn({ claim: claim.id, model: claim.model }, 'no batch was made from the submission; submitting again');
    await this.d.store.clearIntent(claim.id);
    delete claim.intentAt;
    delete claim.intentCount;
    delete claim.sendEndedAt;
    claim.due = true;
    claim.nextAt = this.d.now();
  }

  private async recordSubmitted(claim: LiveClaim, api: BatchApi, batchId: string, event: 'submitted' | 'found'): Promise<void> {
    const submittedAt = this.d.now();
    if (await this.d.store.recordBatch(claim.id, batchId, submittedAt)) {
      claim.batchId = batchId;
      claim.submittedAt = submittedAt;
      claim.nextAt = submittedAt + this.d.config.batch.pollIntervalMs;
      this.d.metrics.batches.inc({ provider: claim.provider, model: claim.model, event });
      this.d.logger.info({ claim: claim.id, batchId, provider: claim.provider, model: claim.model, jobs: claim.intentCount }, 'batch submitted');
      return;
    }
    // Another batch was recorded for this claim first: ours duplicates it. Cancel ours; the jobs
    // settle from the recorded one (their results would be identical).
    this.d.logger.error({ claim: claim.id, batchId }, 'a second batch was made for one claim; canceling it');
    this.d.metrics.batches.inc({ provider: claim.provider, model: claim.model, event: 'duplicate_canceled' });
    await api.cancel(batchId).catch((err: Error) => this.d.logger.warn({ batchId, err: err.message }, 'could not cancel the duplicate batch'));
    this.d.reload();
  }

  private async poll(claim: LiveClaim): Promise<void> {
    const api = this.d.apis[claim.provider];
    if (!api) throw new Error(`no batch API for "${claim.provider}" to poll batch ${claim.batchId}`);
    const status = await api.status(claim.batchId!);
    if (!status.ended) {
      claim.nextAt = this.d.now() + this.d.config.batch.pollIntervalMs;
      return;
    }
    await this.settle(claim, api, status);
  }

  /** Ends every job of an ended batch from its own entry; a crash midway is simply redone. */
  private async settle(claim: LiveClaim, api: BatchApi, status: Extract<BatchStatus, { ended: true }>): Promise<void> {
    const ctx = this.d.settleContext();
    const view = { provider: claim.provider, model: claim.model, token: claim.token, submittedAt: claim.submittedAt };
    const byCustomId = customIdMap(claim.provider, claim.jobIds);
    const seen = new Set<string>();
    const counts = { completed: 0, failed: 0, requeued: 0, skipped: 0 };
    const pool = new TaskPool(SETTLE_CONCURRENCY);
    const end = (jobId: string, fate: JobFate) =>
      pool.run(async () => {
        counts[await settleJob(ctx, view, jobId, fate, status.endedAt)] += 1;
      });
    for await (const entry of api.results(claim.batchId!)) {
      const jobId = byCustomId.get(entry.customId);
      // Not one of ours (an Anthropic batch matched by count must prove itself here).
      if (jobId === undefined || seen.has(jobId)) continue;
      seen.add(jobId);
      await end(jobId, entry.outcome);
    }
    for (const jobId of claim.jobIds) {
      if (seen.has(jobId)) continue;
      const why = `batch ${claim.batchId} ${status.status} without a result for it`;
      await end(jobId, status.missing ?? { kind: 'requeue', failure: jobFailure(FailureCode.BATCH_LOST, why) });
    }
    await pool.drain();
    await this.d.store.remove(claim);
    this.d.dropClaim(claim.id);
    this.d.metrics.batches.inc({ provider: claim.provider, model: claim.model, event: 'ended' });
    this.d.logger.info({ claim: claim.id, batchId: claim.batchId, status: status.status, ...counts }, 'batch settled');
    // Only once the claim is gone: a settle redone after a crash must still find the results. A
    // crash right here leaves the provider's copy behind (the logs name the batch).
    await api.discard?.(claim.batchId!).catch((err: Error) => this.d.logger.warn({ batchId: claim.batchId, err: err.message }, 'could not delete the batch files'));
  }

  failClaim(claim: LiveClaim, failure: JobFailure): Promise<void> {
    return this.endClaim(claim, { kind: 'failed', failure });
  }

  /**
   * A step of this claim threw (the leader retries it). A submitted batch that has not been
   * readable for UNREADABLE_GIVE_UP_MS, that long past its provider's 24 h window, is given up:
   * its jobs that were not settled go back to the lane.
   */
  async stepFailed(claim: LiveClaim, err: Error): Promise<void> {
    const now = this.d.now();
    claim.failingSince ??= now;
    if (claim.batchId === undefined || claim.submittedAt === undefined) return;
    if (now - claim.failingSince < UNREADABLE_GIVE_UP_MS || now - claim.submittedAt < BATCH_WINDOW_MS + UNREADABLE_GIVE_UP_MS) return;
    const why = `batch ${claim.batchId} could not be read for ${Math.round((now - claim.failingSince) / 60_000)} min, ${Math.round((now - claim.submittedAt) / 3600_000)} h after its submission (${err.message})`;
    this.d.logger.error({ claim: claim.id, batchId: claim.batchId, model: claim.model, err: err.message }, 'batch unreadable past its 24 h window; its jobs go back to the lane');
    this.d.metrics.batches.inc({ provider: claim.provider, model: claim.model, event: 'unreadable' });
    await this.endClaim(claim, { kind: 'requeue', failure: jobFailure(FailureCode.BATCH_LOST, why) });
  }

  private async endClaim(claim: LiveClaim, fate: JobFate): Promise<void> {
    const ctx = this.d.settleContext();
    const view = { provider: claim.provider, model: claim.model, token: claim.token };
    await mapLimited([...claim.jobIds], SETTLE_CONCURRENCY, (id) => settleJob(ctx, view, id, fate, undefined));
    await this.d.store.remove(claim);
    this.d.dropClaim(claim.id);
  }

  /**
   * Drops jobs from a claim (in Redis and here): gone, or no longer under its lock. An OpenAI input
   * file uploaded for the claim goes with them: it holds every job the claim had then, and a later
   * submission reusing it would send a dropped job (back in the lane, sent again from there) twice.
   */
  async forget(claim: LiveClaim, jobIds: readonly string[]): Promise<void> {
    const mine = jobIds.filter((id) => claim.jobIds.has(id));
    if (mine.length === 0) return;
    for (const id of mine) claim.jobIds.delete(id);
    const dropFile = claim.fileId !== undefined;
    delete claim.fileId;
    await this.d.store.removeJobs(claim.id, mine, dropFile);
  }
}
