/**
 * One dispatcher per worker process: fetches jobs by hand across the lanes in priority order
 * (BullMQ has no priority across queues; lane-picker.ts), one per free slot, renews their locks,
 * runs each job (run/job-runner.ts) and has its outcome applied (outcome-applier.ts). A job told
 * to wait goes back to the front of its lane and its pool backs off in that lane, fleet-wide
 * (pool-backoff.ts), so a waiting job never holds a slot. The lane's jobs for other pools keep
 * flowing: before a fetch, the first of them is brought to the front. Only when every job near
 * the front waits on a backed-off pool does the whole lane back off.
 *
 * With nothing to take, the dispatcher blocks on the lanes' BullMQ markers (lane-waker.ts) and
 * wakes the moment a job is added, rather than polling with sleeps; on a Redis Cluster, where one
 * command cannot block on four slots, or with `dispatch.idleWake: poll`, it still polls.
 *
 * Blocking, it also asks how many jobs the lanes it would try hold, one round trip for all of them
 * (`readyJobs`), rather than running BullMQ's fetch on each in turn to find it empty: that was 2.8
 * empty fetches per job on an idle fleet (the lane just taken from, then the lower ones), each a
 * script call of BullMQ's fetch. A marker wake needs no such question: the lane has work.
 */
import type { Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import { allFairShareOnly, bringRunnableToFront, checkTakenJob, ClosedError, createRedis, INTERACTIVE_LANES, isConnectionError, reportOutages, laneKeys, notAdmittedFailure, poolOf, readyJobs, unadmitted, withSharedDeadline, type HeadroomConfig, type InteractiveLane, type LlmJob } from '@headroom/queue';
import { JobCancelled, runJob, type RunContext, type RunOutcome } from '../run/job-runner.js';
import { CancelListener } from './cancel-listener.js';
import { LanePicker } from './lane-picker.js';
import { HeldJobs } from './held-jobs.js';
import { LaneWaker } from './lane-waker.js';
import { LaneWorker } from './lane-worker.js';
import { OutcomeApplier, readProgress } from './outcome-applier.js';
import { PoolBackoffs } from './pool-backoff.js';

export interface DispatcherOptions {
  ctx: RunContext;
  config: HeadroomConfig;
  redisUrl: string;
  /** Command connection for the fleet's pool backoffs. */
  redis: Redis | Cluster;
  workerId: string;
}

/** A job this worker took, with what the taking learnt of it. */
type Fetched = Pick<Active, 'job' | 'lane' | 'token' | 'fetched' | 'lateOn'>;

interface Active {
  job: Job;
  token: string;
  lane: InteractiveLane;
  /** This worker's fetch count when it took the job: the lane's order among its jobs. */
  fetched: number;
  /** Taken past its primary's queue for a fallback: that pool (`JobMeta.lateOn`). */
  lateOn?: string;
  abort: AbortController;
  done: Promise<void>;
}

const IDLE_SLEEP_MAX_MS = 100;
/**
 * An idle worker blocked on the markers still looks at every lane, in case a wake never came: a
 * marker taken by a worker that stopped before it fetched, or lost in a Redis restart, costs at
 * most this much pickup delay. It looks a second after its last work, then twice as long after
 * each look that finds nothing, up to IDLE_LOOK_MAX_MS: a look is a script of 17 commands, and
 * one a second per worker was a quarter of an idle fleet's Redis commands. A marker wake or a job
 * taken starts it at a second again, so a busy fleet keeps the short bound.
 */
const IDLE_LOOK_FIRST_MS = 1_000;
const IDLE_LOOK_MAX_MS = 4_000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Dispatcher {
  private readonly lanes = new Map<InteractiveLane, LaneWorker>();
  /** BullMQ never closes a connection it was handed: these are ours to close. */
  private readonly connections: (Redis | Cluster)[] = [];
  private readonly active = new Map<string, Active>();
  private readonly picker: LanePicker;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private slotWaiter: (() => void) | undefined;
  private lockTimer: NodeJS.Timeout | undefined;
  private readonly backoffs: PoolBackoffs;
  private readonly outcomes: OutcomeApplier;
  /** Jobs waiting for room in their full lane: active, locked, holding no slot. */
  private readonly held: HeldJobs;
  private tokenSeq = 0;
  private waker: LaneWaker | undefined;
  private cancels: CancelListener | undefined;
  /**
   * Lane -> jobs it held when last asked (or 1 after its marker woke us), counted down per fetch.
   * A lane with no entry is asked before it is fetched from; one found empty is marked empty.
   */
  private readonly ready = new Map<InteractiveLane, number>();
  /** How long the next idle wait may block before this worker looks at the lanes itself. */
  private idleLookMs = IDLE_LOOK_FIRST_MS;

  constructor(private readonly opts: DispatcherOptions) {
    const { config, ctx } = opts;
    this.picker = new LanePicker({
      order: config.dispatch.order,
      lanes: INTERACTIVE_LANES,
      weights: Object.fromEntries(INTERACTIVE_LANES.map((l) => [l, config.lanes[l].weight])) as Record<InteractiveLane, number>,
      emptyForMs: config.dispatch.emptyLanePollMs,
      now: ctx.now,
    });
    this.backoffs = new PoolBackoffs(opts.redis, config.redis.prefix, ctx.now, ctx.poolHolds);
    this.held = new HeldJobs({
      redis: opts.redis,
      prefix: config.redis.prefix,
      logger: ctx.logger,
      now: ctx.now,
      onReturned: (held) => (held.waitMs === undefined ? Promise.resolve() : this.outcomes.backOff(held)),
    });
    this.outcomes = new OutcomeApplier({ ctx, config, redis: opts.redis, backoffs: this.backoffs, held: this.held, backendOf: (lane) => this.lanes.get(lane)!.backend });
  }

  /**
   * Opens the lanes and starts taking jobs. A `stop()` or `halt()` while it waits on Redis
   * makes it throw `ClosedError` rather than go on to take jobs.
   */
  async start(): Promise<void> {
    const { config, redisUrl } = this.opts;
    for (const lane of INTERACTIVE_LANES) {
      this.throwIfStopping();
      const k = laneKeys(config.redis.prefix, lane);
      const worker = new LaneWorker(k.queueName, null, {
        connection: this.own(createRedis(redisUrl, 'worker'), `lane:${lane}`),
        prefix: k.bullPrefix,
        autorun: false,
        lockDuration: config.dispatch.lockMs,
        stalledInterval: config.dispatch.stalledIntervalMs,
        // A job whose worker died twice mid-call is still retried once more before failing.
        maxStalledCount: 2,
        // We renew locks ourselves for the jobs we fetched by hand.
        skipLockRenewal: true,
        name: this.opts.workerId,
      });
      // Its connections' failures are the connection's to report (once per outage), not once per retry here.
      worker.on('error', (err) => {
        if (!isConnectionError(err)) this.opts.ctx.logger.warn({ lane, err: err.message }, 'lane worker error');
      });
      // Kept before it is ready, so a stop while it waits for Redis closes it too.
      this.lanes.set(lane, worker);
      await worker.waitUntilReady();
      this.throwIfStopping();
      await worker.startStalledCheckTimer();
    }
    this.throwIfStopping();
    if (config.dispatch.idleWake === 'block') this.waker = new LaneWaker(this.own(createRedis(redisUrl, 'worker'), 'lane-waker'), config.redis.prefix, INTERACTIVE_LANES);
    this.cancels = new CancelListener(this.own(createRedis(redisUrl, 'worker'), 'cancels'), config.redis.prefix, this.opts.ctx.now, this.opts.ctx.logger);
    await this.cancels.start((jobId) => {
      const running = this.active.get(jobId);
      running?.abort.abort(new JobCancelled());
      return running !== undefined;
    });
    this.throwIfStopping();
    this.lockTimer = setInterval(() => void this.renewLocks(), Math.max(500, Math.floor(config.dispatch.lockMs / 3)));
    this.loopDone = this.loop();
  }

  /** Keeps `conn` to close on stop, and reports its outages under `name`. */
  private own(conn: Redis | Cluster, name: string): Redis | Cluster {
    reportOutages(conn, this.opts.ctx.logger, name);
    this.connections.push(conn);
    return conn;
  }

  get inFlight(): number {
    return this.active.size;
  }

  private throwIfStopping(): void {
    if (this.stopping) throw new ClosedError('the dispatcher');
  }

  /**
   * Stops taking jobs; lets in-flight calls finish for `graceMs`, then hands the rest back. The
   * grace runs from the call, whatever the loop is waiting on: a loop stuck on an unreachable Redis
   * must not keep the calls in flight from being aborted when it ends.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.slotWaiter?.();
    this.waker?.close();
    const graceOver = sleep(graceMs);
    await Promise.race([this.loopDone, graceOver]);
    // The loop begins no job once stopping is set: these are all the calls there will be.
    const all = [...this.active.values()];
    const finished = Promise.all(all.map((a) => a.done));
    const timedOut = await Promise.race([finished.then(() => false), graceOver.then(() => true)]);
    if (timedOut) {
      for (const a of this.active.values()) a.abort.abort();
      await Promise.race([Promise.all([...this.active.values()].map((a) => a.done)), sleep(5_000)]);
    }
    await this.loopDone;
    // Held jobs go back whatever their lanes hold: this worker can no longer keep them.
    await this.held.releaseAll();
    if (this.lockTimer) clearInterval(this.lockTimer);
    await Promise.all([...this.lanes.values()].map((w) => w.close(true).catch(() => {})));
    for (const conn of this.connections.splice(0)) conn.disconnect();
    await this.outcomes.close();
  }

  /**
   * Gives up on Redis, for a stop Redis does not answer: takes no more jobs, aborts the calls still
   * running, stops its timers, closes the lanes without waiting and cuts its connections. Jobs it
   * still holds are left to BullMQ's stalled check. Nothing here waits: a command queued on a
   * connection that is between reconnects is never settled by ioredis, even by a disconnect.
   */
  halt(): void {
    this.stopping = true;
    this.slotWaiter?.();
    this.waker?.close();
    for (const a of this.active.values()) a.abort.abort();
    if (this.lockTimer) clearInterval(this.lockTimer);
    void this.held.releaseAll();
    for (const w of this.lanes.values()) void w.close(true).catch(() => {});
    for (const conn of this.connections) conn.disconnect();
  }

  private async loop(): Promise<void> {
    const { ctx, config } = this.opts;
    let idle = 5;
    while (!this.stopping) {
      if (this.active.size >= config.dispatch.concurrency) {
        await new Promise<void>((r) => { this.slotWaiter = r; });
        continue;
      }
      try {
        // Learning other workers' backoffs (at most every 100 ms) does not hold up this fetch:
        // a stale view costs at most one job told to wait, not a round trip before every pickup.
        // Blocking, it is learnt only while a lane is known to hold work: backoffs hold back only
        // jobs that wait, and an idle worker's look at empty lanes needs none (4 commands a look).
        if (!this.waker?.available || this.ready.size > 0) void this.backoffs.refresh().catch(() => {});
        const got = await this.fetchOne();
        if (!got) {
          if (this.waker?.available) {
            await this.idleWait();
            continue;
          }
          await sleep(Math.min(idle, Math.max(1, this.picker.msUntilNextOpen())));
          idle = Math.min(IDLE_SLEEP_MAX_MS, idle * 2);
          continue;
        }
        idle = 5;
        this.idleLookMs = IDLE_LOOK_FIRST_MS;
        if (this.stopping) {
          // Fetched while the stop began: a stopping worker starts nothing new; the job goes back
          // to the front of its lane, no attempt spent, for another worker.
          await this.outcomes.apply(got.job, got.token, got.lane, { kind: 'aborted', progress: readProgress(got.job.progress) });
          break;
        }
        this.begin(got);
      } catch (err) {
        if (this.stopping) break;
        ctx.logger.error({ err: (err as Error).message }, 'dispatch loop error; retrying');
        await sleep(500);
      }
    }
  }

  /**
   * Nothing to take: block on the lanes' markers until work arrives, a backed-off lane reopens or
   * a delayed job is due. A lane's marker ends its "empty" mark; a delay marker says when its
   * lane's next delayed job is due; a wait that times out looks at every lane again.
   */
  private async idleWait(): Promise<void> {
    const lookMs = this.idleLookMs;
    const timeoutMs = Math.min(lookMs, this.picker.msUntilTimedOpen());
    if (timeoutMs < 1) return;
    const woke = await this.waker!.wait(timeoutMs);
    if (!woke) {
      // A wait cut short for a lane's timed reopening is not a look that found nothing.
      if (timeoutMs >= lookMs) this.idleLookMs = Math.min(IDLE_LOOK_MAX_MS, lookMs * 2);
      this.picker.wakeAll();
      return;
    }
    this.idleLookMs = IDLE_LOOK_FIRST_MS;
    if (woke.dueAt > this.opts.ctx.now()) this.picker.dueAtTime(woke.lane, woke.dueAt);
    else {
      this.picker.wakeFromMarker(woke.lane, INTERACTIVE_LANES);
      // Work was added there: fetch at once, without asking first (the idle path's latency).
      this.ready.set(woke.lane, Math.max(1, this.ready.get(woke.lane) ?? 0));
    }
  }

  /**
   * Asks how many jobs the lanes without a known count hold (blocking mode only: one script over
   * all lanes needs one Redis node). Empty ones are marked empty, as an empty fetch would.
   */
  private async countReady(lanes: readonly InteractiveLane[], counted: Set<InteractiveLane>): Promise<void> {
    const unknown = lanes.filter((lane) => !this.ready.has(lane) && !counted.has(lane));
    if (unknown.length === 0) return;
    const counts = await readyJobs(this.opts.redis, this.opts.config.redis.prefix, unknown, this.opts.ctx.now());
    unknown.forEach((lane, i) => {
      counted.add(lane);
      if ((counts[i] ?? 0) > 0) this.ready.set(lane, counts[i]!);
      else this.picker.markEmpty(lane);
    });
  }

  /** `lanes` from `from` up to, not including, the first one after it with a known count. */
  private untilKnown(lanes: readonly InteractiveLane[], from: number): InteractiveLane[] {
    const known = lanes.findIndex((lane, i) => i > from && this.ready.has(lane));
    return lanes.slice(from, known < 0 ? undefined : known);
  }

  private async fetchOne(): Promise<Fetched | undefined> {
    const candidates = this.picker.candidates();
    const counting = this.waker?.available === true;
    // Lanes asked about in this pass: one found empty is not asked again for the lanes after it
    // (an idle worker's look at the lanes once a second was 4 script calls, not 1).
    const counted = new Set<InteractiveLane>();
    for (const [i, lane] of candidates.entries()) {
      // Counted only when reached: a lane known to hold work (its marker woke us, or a count not
      // yet used up) is fetched from without first asking about the lanes after it, a round trip
      // off the idle path; and a count asks only about the lanes up to the next one known to hold
      // work, as the lanes past it are reached only if its fetch comes back empty (under load,
      // the lanes below the busy one were asked about at every count, 4 commands each).
      if (counting && !this.ready.has(lane)) await this.countReady(this.untilKnown(candidates, i), counted);
      const known = this.ready.get(lane);
      if (counting && known === undefined) continue;
      const blocked = this.backoffs.backedOff(lane);
      let fallsBack: string | undefined;
      if (blocked.length > 0) {
        const front = await bringRunnableToFront(this.opts.redis, this.opts.config.redis.prefix, lane, {
          pools: blocked,
          waitEnds: this.backoffs.waitEnds(lane),
          paces: this.backoffs.paces(lane),
          failingModels: this.opts.ctx.throttles.failing(),
          laneMaxWaitMs: this.opts.config.lanes[lane].maxWaitMs,
          now: this.opts.ctx.now(),
        });
        fallsBack = front.fallsBack;
        if (front.outcome === 'blocked') {
          this.picker.backOff(lane, this.backoffs.msUntilFirstReopens(lane), allFairShareOnly(blocked));
          continue;
        }
      }
      const fetched = ++this.tokenSeq;
      const token = `${this.opts.workerId}:${fetched}`;
      this.opts.ctx.poolHolds.sending(fetched);
      const job = await this.lanes.get(lane)!.getNextJob(token, { block: false });
      // Counted down to nothing, the lane is asked again before the next fetch there.
      if (known !== undefined && known > 1 && job) this.ready.set(lane, known - 1);
      else this.ready.delete(lane);
      if (job) {
        // Refused, it is done with: look again from the top lane, strict lane order kept.
        if (await this.refuseInvalid(job, lane, token)) return this.fetchOne();
        const pool = poolOf(this.opts.config, (job.data as LlmJob).request.model);
        this.opts.ctx.poolHolds.fetched(job.id!, lane, pool, fetched);
        // Another worker may have taken the job brought forward: this one is then judged by its plan alone.
        return { job, lane, token, fetched, ...(job.id === fallsBack ? { lateOn: pool } : {}) };
      }
      this.picker.markEmpty(lane);
    }
    return undefined;
  }

  /**
   * Fails a job this worker's version cannot read, or one admission never added, with
   * `JOB_INVALID`, naming what is wrong: a lane can hold jobs no admission of this version checked
   * (written by another tool, or by a newer version's producer during a roll-over). Unchecked, such a job threw here or in its run,
   * went back to its lane when its lock expired, and was taken again, for ever. Otherwise the job
   * carries its validated data from here on.
   */
  private async refuseInvalid(job: Job, lane: InteractiveLane, token: string): Promise<boolean> {
    const checked = checkTakenJob(job.data);
    let failure = 'failure' in checked ? checked.failure : undefined;
    // Well formed but added around admission (BullMQ's Queue.add): it skipped the lane's caps,
    // its tenant's quota and shedding, so it is not sent either.
    if (!failure && (await unadmitted(this.opts.redis, this.opts.config.redis.prefix, lane, [job])).size > 0) failure = notAdmittedFailure();
    if (!failure) {
      job.data = (checked as { job: LlmJob }).job;
      return false;
    }
    this.opts.ctx.logger.warn({ jobId: job.id, lane, err: failure.message }, 'job refused: not a job this worker can read');
    await this.outcomes.apply(job, token, lane, { kind: 'failed', failure, progress: readProgress(job.progress) });
    return true;
  }

  private begin(got: Fetched): void {
    const abort = new AbortController();
    const entry: Active = { ...got, abort, done: Promise.resolve() };
    const { job } = got;
    entry.done = this.process(entry).finally(() => {
      this.active.delete(job.id!);
      this.opts.ctx.metrics.inFlight.set(this.active.size);
      const waiter = this.slotWaiter;
      this.slotWaiter = undefined;
      waiter?.();
    });
    this.active.set(job.id!, entry);
    this.opts.ctx.metrics.inFlight.set(this.active.size);
    if (this.cancels?.takeEarly(job.id!)) abort.abort(new JobCancelled());
  }

  private async process({ job, token, lane, fetched, lateOn, abort }: Active): Promise<void> {
    const { ctx } = this.opts;
    const progress = readProgress(job.progress);
    let outcome: RunOutcome;
    try {
      const fresh = (job.opts as { hrFresh?: number }).hrFresh === 1;
      // Its deadline is the latest its callers want (coalesced joins, repeats), not its first caller's.
      const takenBefore = job.attemptsStarted > 1;
      const stalled = job.stalledCounter > 0;
      outcome = await runJob(ctx, withSharedDeadline(job.data as LlmJob, job.opts), { id: job.id!, lane, enqueuedAt: job.timestamp, progress, fetched, ...(fresh ? { fresh } : {}), ...(lateOn ? { lateOn } : {}), ...(takenBefore ? { takenBefore } : {}), ...(stalled ? { stalled } : {}) }, abort.signal);
    } catch (err) {
      // Not a provider failure (e.g. Redis away mid-acquire): park the job briefly; if Redis is
      // gone entirely, the lock expires and the stalled check hands the job to another worker.
      ctx.logger.error({ jobId: job.id, lane, err: (err as Error).message }, 'job run error');
      outcome = { kind: 'delay', delayMs: 1_000, progress };
    }
    await this.outcomes.apply(job, token, lane, outcome);
  }

  private async renewLocks(): Promise<void> {
    const lockMs = this.opts.config.dispatch.lockMs;
    await Promise.all(
      [...this.active.values(), ...this.held.locks()].map(({ job, token }) =>
        job.extendLock(token, lockMs).catch((err: Error) => this.opts.ctx.logger.warn({ jobId: job.id, err: err.message }, 'lock renewal failed')),
      ),
    );
  }
}
