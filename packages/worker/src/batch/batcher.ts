/**
 * The batch router. Every worker runs one; the one holding the lease leads:
 *
 * 1. gathers  takes BATCH jobs with `getNextJob` under its term's lock token, files each in the
 *             open claim of its (provider, model) in Redis, THEN lengthens its lock to
 *             `parkLockMs` — a crash before the filing leaves a short lock that expires, and the
 *             stalled check hands the job back to the lane;
 * 2. submits  a claim that is full (N, the provider's size limit) or whose oldest job waited T:
 *             writes the intent under its fence, then sends the Message Batch / uploads the file
 *             and creates the OpenAI Batch, then records the batch id;
 * 3. finds    a batch whose create answer never came (crash, timeout, 5xx): OpenAI by the claim id
 *             in the batch metadata, Anthropic by creation time and request count; not found past
 *             the submission deadline means not made, and only then is the claim sent again;
 * 4. polls    each submitted batch every `pollIntervalMs`, and when it ends settles every job
 *             from its own entry (`custom_id` = job id).
 *
 * Parked jobs stay active in BullMQ under a long lock the leader renews in bulk: they hold no
 * worker slot and no per-job timer, count against no lane cap (they have started), and only the
 * claim's token can end them. A new leader reloads every claim from Redis and carries on.
 */
import { randomUUID } from 'node:crypto';
import { Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { callOptionsOf, checkTakenJob, ClosedError, createRedis, FailureCode, fleetKeys, isConnectionError, reportOutages, jobFailure, laneKeys, notAdmittedFailure, parkBatchJobs, readyJobs, unadmitted, type HeadroomConfig, type JobFailure, type LlmJob, type FleetStatsWriter, type Logger } from '@headroom/queue';
import type { WorkerMetrics } from '../metrics.js';
import type { BatchApis } from './batch-apis.js';
import { BatchMetrics } from './batch-metrics.js';
import { batchLimitsFor, ClaimAssembler } from './claim-assembler.js';
import { ClaimSteps, type LiveClaim, SETTLE_CONCURRENCY } from './claim-steps.js';
import { ClaimStore, phaseOf } from './claim-store.js';
import { customIdOf } from './custom-id.js';
import { LaneWorker } from '../dispatch/lane-worker.js';
import { type SettleContext, settleJob } from './job-settler.js';
import { LeaderLease } from './leader-lease.js';
import { mapLimited } from './task-pool.js';

export interface BatcherOptions {
  config: HeadroomConfig;
  redisUrl: string;
  /** Command connection shared with the worker (claims, stats). */
  redis: Redis | Cluster;
  workerId: string;
  apis: BatchApis;
  metrics: WorkerMetrics;
  stats: FleetStatsWriter;
  logger: Logger;
  now?: () => number;
  random?: () => number;
}

/** Jobs taken per round before the claims are written and the lane is looked at again. */
const FETCH_CHUNK = 500;
const FETCH_PARALLEL = 50;
/**
 * How often the BATCH lane is looked at: at first every 250 ms, and while it stays empty, twice as
 * long each time up to 2 s. An idle leader's look (a script of six commands) four times a second
 * was most of an idle fleet's Redis load; a batch job's first two seconds in the lane cost it
 * nothing (its batch answers within hours).
 */
const LANE_POLL_MS = 250;
const LANE_POLL_MAX_MS = 2_000;
const RETRY_MS = 5_000;
const LOCK_CHUNK = 5_000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Batcher {
  private lane: LaneWorker | undefined;
  private leaseRedis: Redis | Cluster | undefined;
  private laneRedis: Redis | Cluster | undefined;
  private lease: LeaderLease | undefined;
  private readonly store: ClaimStore;
  private readonly assembler: ClaimAssembler;
  private readonly claims = new Map<string, LiveClaim>();
  private readonly batchMetrics: BatchMetrics;
  private readonly steps: ClaimSteps;
  private readonly acts = new Set<Promise<void>>();
  private readonly inflight = new Set<AbortController>();
  private readonly now: () => number;
  private readonly random: () => number;
  private token: string | undefined;
  private fence = 0;
  private leading = false;
  private resyncNeeded = false;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private nextParkRenewAt = 0;
  /** How long the lane may go unlooked-at: grows while it is found empty. */
  private lanePollMs = LANE_POLL_MS;

  constructor(private readonly opts: BatcherOptions) {
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.store = new ClaimStore(opts.redis, opts.config.redis.prefix);
    this.assembler = new ClaimAssembler({
      limitsOf: (provider) => batchLimitsFor(provider, opts.config.batch.maxRequests),
      maxWaitMs: opts.config.batch.maxWaitMs,
      newClaimId: () => `${this.now().toString(36)}-${randomUUID().slice(0, 8)}`,
    });
    this.batchMetrics = new BatchMetrics(opts.metrics.registry);
    this.steps = new ClaimSteps({
      config: opts.config,
      logger: opts.logger,
      apis: opts.apis,
      store: this.store,
      metrics: this.batchMetrics,
      lane: () => this.lane!,
      redis: opts.redis,
      lease: () => this.lease!,
      settleContext: () => this.settleContext(),
      now: this.now,
      redisTimeMs: () => this.redisTimeMs(),
      inflight: this.inflight,
      claims: () => this.claims.values(),
      dropClaim: (claimId) => this.claims.delete(claimId),
      reload: () => {
        this.resyncNeeded = true;
      },
    });
  }

  /** A stop while `start` waited on Redis: it must not go on to lead. */
  private throwIfStopping(): void {
    if (this.stopping) throw new ClosedError('the batcher');
  }

  /** True while this process leads the fleet's batching. */
  get isLeader(): boolean {
    return this.leading && (this.lease?.isHeld() ?? false);
  }

  async start(): Promise<void> {
    const { config, redisUrl, workerId, logger } = this.opts;
    const k = laneKeys(config.redis.prefix, 'batch');
    this.laneRedis = createRedis(redisUrl, 'worker');
    reportOutages(this.laneRedis, logger, 'lane:batch');
    this.lane = new LaneWorker(k.queueName, null, {
      connection: this.laneRedis,
      prefix: k.bullPrefix,
      autorun: false,
      // Short until the job is filed in a claim; then parkLockMs.
      lockDuration: config.dispatch.lockMs,
      stalledInterval: config.dispatch.stalledIntervalMs,
      maxStalledCount: 3,
      skipLockRenewal: true,
      name: workerId,
    });
    this.lane.on('error', (err) => {
      if (!isConnectionError(err)) logger.warn({ lane: 'batch', err: err.message }, 'batch lane worker error');
    });
    await this.lane.waitUntilReady();
    this.throwIfStopping();
    // Every worker runs the BATCH lane's stalled check, leader or not: it is what returns jobs a
    // leader took but died before filing.
    await this.lane.startStalledCheckTimer();
    this.throwIfStopping();
    this.leaseRedis = createRedis(redisUrl, 'worker');
    reportOutages(this.leaseRedis, logger, 'batch-lease');
    this.lease = new LeaderLease({ redis: this.leaseRedis, keys: fleetKeys(config.redis.prefix), holder: workerId, ttlMs: config.batch.leaseMs });
    this.renewTimer = setInterval(() => void this.keepLease(), Math.max(200, Math.floor(config.batch.leaseMs / 3)));
    this.loopDone = this.loop();
  }

  /**
   * Stops leading. Submissions in flight get `graceMs` to finish, then are aborted (their claims
   * stay `submitting`, and the next leader finds out whether the batch exists). Claims not yet
   * submitted give their jobs back to the lane; parked jobs stay parked for the next leader.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.wake?.();
    // The grace runs from the call: a loop stuck on an unreachable Redis must not keep the
    // submissions in flight from being aborted when it ends.
    const graceOver = sleep(graceMs);
    await Promise.race([this.loopDone, graceOver]);
    if (this.acts.size > 0) await Promise.race([Promise.all(this.acts), graceOver]);
    for (const abort of this.inflight) abort.abort();
    if (this.acts.size > 0) await Promise.race([Promise.all(this.acts), sleep(5_000)]);
    await this.loopDone;
    if (this.renewTimer) clearInterval(this.renewTimer);
    if (this.leading && this.lease?.isHeld()) {
      await this.returnOpenClaims().catch((err: Error) => this.opts.logger.warn({ err: err.message }, 'could not hand open batch claims back; the next leader submits them'));
      await this.lease.release().catch(() => {});
    }
    this.leading = false;
    this.batchMetrics.leader.set(0);
    await this.lane?.close(true).catch(() => {});
    // BullMQ never closes a connection it was handed.
    this.laneRedis?.disconnect();
    this.leaseRedis?.disconnect();
  }

  /**
   * Gives up on Redis, for a stop Redis does not answer: leads no more, aborts the submissions in
   * flight, stops its timers, closes the lane without waiting and cuts its connections. Claims it
   * held are found by the next leader; jobs it took are left to the lane's stalled check.
   */
  halt(): void {
    this.stopping = true;
    this.wake?.();
    for (const abort of this.inflight) abort.abort();
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.leading = false;
    this.batchMetrics.leader.set(0);
    void this.lane?.close(true).catch(() => {});
    this.laneRedis?.disconnect();
    this.leaseRedis?.disconnect();
  }

  private async loop(): Promise<void> {
    const { config, logger } = this.opts;
    while (!this.stopping) {
      try {
        if (!this.lease!.isHeld()) {
          if (this.leading) this.stepDown('lease lost');
          if (await this.lease!.tryAcquire()) await this.takeOver();
          else {
            await this.idle((config.batch.leaseMs / 3) * (0.75 + this.random() / 2));
            continue;
          }
        }
        const idleMs = await this.tick();
        if (idleMs > 0) await this.idle(idleMs);
      } catch (err) {
        logger.error({ err: (err as Error).message }, 'batcher loop error; reloading claims from Redis');
        this.resyncNeeded = true;
        await this.idle(1_000);
      }
    }
  }

  private async keepLease(): Promise<void> {
    if (!this.leading || !this.lease) return;
    const ok = await this.lease.renew().catch(() => false);
    if (!ok) this.stepDown('lease renewal refused');
  }

  private async takeOver(): Promise<void> {
    this.leading = true;
    this.fence = this.lease!.fence ?? 0;
    // One token per term: every claim opened in this term shares it; older claims keep theirs.
    this.token = `hrb-${this.fence}-${this.opts.workerId}`;
    await this.resync();
    this.batchMetrics.leader.set(1);
    this.opts.logger.info({ fence: this.fence, claims: this.claims.size }, 'batcher leader elected');
  }

  private stepDown(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.lease?.drop();
    this.assembler.clear();
    this.claims.clear();
    this.batchMetrics.leader.set(0);
    this.batchMetrics.parkedJobs.set(0);
    this.opts.logger.warn({ fence: this.fence, why }, 'batcher leader stepped down');
  }

  /** Rebuilds the leader's view from Redis: every claim found is carried on from where it stands. */
  private async resync(): Promise<void> {
    // Steps still running act on the old view: let them end first, or a claim could be worked
    // on twice (two submissions of one claim).
    await Promise.all(this.acts);
    this.resyncNeeded = false;
    this.assembler.clear();
    this.claims.clear();
    const now = this.now();
    for (const claim of await this.store.loadAll()) {
      // An inherited open claim cannot grow (its token is not ours): it is submitted as it is.
      this.claims.set(claim.id, { ...claim, nextAt: now, due: true, busy: false });
    }
    this.nextParkRenewAt = 0;
  }

  /** One round: gather, start the steps that are due, renew parked locks. Returns ms to idle. */
  private async tick(): Promise<number> {
    if (this.resyncNeeded) await this.resync();
    const { drained, fetched } = this.stopping ? { drained: true, fetched: 0 } : await this.gather();
    this.lanePollMs = fetched === 0 ? Math.min(LANE_POLL_MAX_MS, this.lanePollMs * 2) : LANE_POLL_MS;
    const now = this.now();
    for (const filled of this.assembler.takeDue(now, drained)) {
      const claim = this.claims.get(filled.id);
      if (claim) claim.due = true;
    }
    // Renewed before this round's steps start: a step started first marks its claim busy, and the
    // renewal's due time usually falls on a poll's tick, so renewing after them skipped the polled
    // claim every time, and a healthy leader let its parked jobs go back to the lane (sent twice).
    if (now >= this.nextParkRenewAt) {
      await this.renewParkLocks();
      this.nextParkRenewAt = now + Math.floor(this.opts.config.batch.parkLockMs / 3);
    }
    let nextAt = now + this.lanePollMs;
    for (const claim of this.claims.values()) {
      if (claim.busy || (phaseOf(claim) === 'open' && !claim.due)) continue;
      if (claim.nextAt <= now) this.act(claim);
      else nextAt = Math.min(nextAt, claim.nextAt);
    }
    let held = 0;
    for (const claim of this.claims.values()) held += claim.jobIds.size;
    this.batchMetrics.parkedJobs.set(held);
    if (fetched >= FETCH_CHUNK) return 0;
    const dueByWait = this.assembler.nextDueAt();
    if (dueByWait !== undefined) nextAt = Math.min(nextAt, dueByWait);
    return Math.max(1, nextAt - this.now());
  }

  /** Takes up to a chunk of BATCH jobs into claims. */
  private async gather(): Promise<{ fetched: number; drained: boolean }> {
    const lane = this.lane!;
    const token = this.token!;
    const jobs: Job[] = [];
    // How many there are first, in one small script: a take on an empty lane is a whole BullMQ
    // fetch, and taking FETCH_PARALLEL at a time made an idle leader run 200 of them a second.
    let ready = (await readyJobs(this.opts.redis, this.opts.config.redis.prefix, ['batch'], this.now()))[0] ?? 0;
    // Several takes in flight at once ride one connection back to back instead of a round trip
    // each; BullMQ's own worker loop takes jobs concurrently the same way.
    while (ready > 0 && jobs.length < FETCH_CHUNK && this.lease!.isHeld() && !this.stopping) {
      const takes = await Promise.allSettled(Array.from({ length: Math.min(FETCH_PARALLEL, ready, FETCH_CHUNK - jobs.length) }, () => lane.getNextJob(token, { block: false })));
      const taken = takes.flatMap((take) => (take.status === 'fulfilled' ? [take.value] : []));
      for (const job of taken) if (job) jobs.push(job);
      const failed = takes.filter((take) => take.status === 'rejected');
      // One take failing (a Redis error, a job BullMQ cannot read after moving it) must not lose
      // the jobs taken beside it: dropped, they sat locked in `active` until their locks lapsed
      // and the stalled check put them back, late and with a stall counted against each. They go
      // on in this round; the rest wait for the next. With nothing taken, the loop's error path
      // (claims reloaded) is the one for it, as before.
      if (failed.length > 0) {
        const err = (failed[0] as PromiseRejectedResult).reason as Error;
        if (jobs.length === 0) throw err;
        this.opts.logger.warn({ lane: 'batch', err: err.message, failedTakes: failed.length, taken: jobs.length }, 'could not take some batch jobs; the ones taken go on in this round, the rest wait for the next');
        break;
      }
      if (taken.some((job) => !job)) break;
      ready -= taken.length;
    }
    if (jobs.length === 0) return { fetched: 0, drained: true };
    const now = this.now();
    const opened = new Set<string>();
    const added = new Map<string, string[]>();
    const unusable: { job: Job; failure: JobFailure }[] = [];
    // Added around admission (BullMQ's Queue.add): no cap or quota applied to it, so not sent either.
    const notAdmitted = await unadmitted(this.opts.redis, this.opts.config.redis.prefix, 'batch', jobs);
    for (const job of jobs) {
      // Jobs are checked at enqueue; this guards the lane against anything else that wrote to it,
      // which would otherwise be taken, fail here, stall back, and be taken again forever.
      const checked = checkTakenJob(job.data);
      if ('failure' in checked || notAdmitted.has(job.id!)) {
        unusable.push({ job, failure: 'failure' in checked ? checked.failure : notAdmittedFailure() });
        continue;
      }
      const data = checked.job;
      const api = this.opts.apis[data.provider];
      if (!api) {
        unusable.push({ job, failure: jobFailure(FailureCode.PROVIDER_REJECTED, `no batch API for "${String(data.provider)}": its API key is not set`) });
        continue;
      }
      const model = data.request.model;
      const { api: endpointApi } = callOptionsOf(data);
      const bytes = api.entryBytes({ customId: customIdOf(data.provider, job.id!), request: data.request }, model, endpointApi);
      const { claim: filling, opened: isNew } = this.assembler.add({ provider: data.provider, model, ...(endpointApi ? { api: endpointApi } : {}), bytes, enqueuedAt: job.timestamp }, now);
      let claim = this.claims.get(filling.id);
      if (!claim) {
        claim = { id: filling.id, provider: data.provider, model, ...(filling.api ? { api: filling.api } : {}), token, fence: this.fence, createdAt: now, oldestAt: filling.oldestAt, jobIds: new Set(), nextAt: now, due: false, busy: false };
        this.claims.set(claim.id, claim);
      }
      if (isNew) opened.add(claim.id);
      claim.jobIds.add(job.id!);
      claim.oldestAt = filling.oldestAt;
      added.set(claim.id, [...(added.get(claim.id) ?? []), job.id!]);
    }
    // File first, lengthen the lock second: see the module comment. A job cancelled meanwhile is
    // gone (lost here); one left marked sent from an earlier batch is cancellable again.
    await Promise.all(
      [...added].map(([claimId, ids]) => {
        const claim = this.claims.get(claimId)!;
        return opened.has(claimId) ? this.store.create(claim) : this.store.addJobs(claimId, ids, claim.oldestAt);
      }),
    );
    const filed = [...added.values()].flat();
    if (filed.length > 0) {
      const lost = await parkBatchJobs(this.opts.redis, this.opts.config.redis.prefix, filed, token, this.opts.config.batch.parkLockMs, { sending: false });
      if (lost.length > 0) await this.forget(lost);
    }
    for (const { job, failure } of unusable) {
      const data = job.data as Partial<LlmJob> | undefined;
      const view = { provider: data?.provider ?? 'anthropic', model: String(data?.request?.model ?? ''), token };
      await settleJob(this.settleContext(), view, job.id!, { kind: 'failed', failure }, undefined).catch(() => {});
    }
    return { fetched: jobs.length, drained: jobs.length < FETCH_CHUNK };
  }

  /** Runs a claim's next step detached: a slow provider must not stall gathering or polling. */
  private act(claim: LiveClaim): void {
    claim.busy = true;
    const step = (async () => {
      try {
        await this.steps.next(claim);
        delete claim.failingSince;
      } catch (err) {
        this.opts.logger.warn({ claim: claim.id, batchId: claim.batchId, err: (err as Error).message }, 'batch step failed; retrying');
        claim.nextAt = this.now() + RETRY_MS;
        await this.steps.stepFailed(claim, err as Error).catch((giveUpErr: Error) => this.opts.logger.warn({ claim: claim.id, err: giveUpErr.message }, 'could not give the unreadable batch up; retrying'));
      } finally {
        claim.busy = false;
      }
    })();
    this.acts.add(step);
    void step.finally(() => {
      this.acts.delete(step);
      this.wake?.();
    });
  }

  /**
   * Keeps parked jobs' locks alive; a job whose lock is gone is no longer this claim's. A busy
   * claim's locks are renewed too: a slow submission or the settling of a large batch can outlast
   * `parkLockMs / 3`, and its jobs must not lapse meanwhile. Its lost jobs are left to its step
   * (the submission checks the locks itself; a settle skips jobs not ours): a job settled a moment
   * ago has no lock either, and is no lapse to report.
   */
  private async renewParkLocks(): Promise<void> {
    const lane = this.lane!;
    for (const claim of this.claims.values()) {
      if (claim.jobIds.size === 0) continue;
      const ids = [...claim.jobIds];
      for (let i = 0; i < ids.length; i += LOCK_CHUNK) {
        const chunk = ids.slice(i, i + LOCK_CHUNK);
        const lost = await lane.extendJobLocks(chunk, chunk.map(() => claim.token), this.opts.config.batch.parkLockMs);
        if (lost.length > 0 && !claim.busy) {
          this.opts.logger.warn({ claim: claim.id, lost: lost.length }, "parked jobs are no longer the claim's (cancelled before their batch was sent, or their lock lapsed while the fleet was away longer than batch.parkLockMs: those run again)");
          await this.forget(lost, claim);
        }
      }
    }
  }

  /** Drops jobs from whichever claims hold them. */
  private async forget(jobIds: readonly string[], only?: LiveClaim): Promise<void> {
    for (const claim of only ? [only] : this.claims.values()) await this.steps.forget(claim, jobIds);
  }

  /** Graceful stop: jobs gathered but not sent go back to the front of the lane. */
  private async returnOpenClaims(): Promise<void> {
    for (const claim of this.claims.values()) {
      if (phaseOf(claim) !== 'open' || claim.busy) continue;
      await mapLimited([...claim.jobIds], SETTLE_CONCURRENCY, async (id) => {
        const job = await Job.fromId(this.lane!, id);
        await job?.moveToWait(claim.token).catch(() => {});
      });
      await this.store.remove(claim);
    }
    this.claims.clear();
  }

  private settleContext(): SettleContext {
    const { config, metrics, stats, logger } = this.opts;
    return { lane: this.lane!, config, metrics, stats, logger, now: this.now, parkLockMs: config.batch.parkLockMs, redis: this.opts.redis };
  }

  private async redisTimeMs(): Promise<number> {
    const [sec, usec] = (await this.opts.redis.time()) as [string | number, string | number];
    return Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
  }

  private idle(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

