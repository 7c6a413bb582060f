/**
 * One dispatcher per worker process: fetches jobs by hand across the lanes in priority order
 * (BullMQ has no priority across queues), one per free slot, renews their locks, and applies each
 * job's outcome. A job told to wait goes back to the front of its lane and its pool backs off in
 * that lane, fleet-wide, for exactly that wait, so a waiting job never holds a slot. The lane's
 * jobs for other pools keep flowing: before a fetch, the first of them is brought to the front.
 * Only when every job near the front waits on a backed-off pool does the whole lane back off.
 */
import { Queue, Worker as BullWorker, type Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import {
  bringRunnableToFront,
  createRedis,
  INTERACTIVE_LANES,
  laneKeys,
  poolOf,
  type HeadroomConfig,
  type InteractiveLane,
  type LlmJob,
} from '@headroom/queue';
import { handOffToBatch } from '../shedding/batch-handoff.js';
import { LanePicker } from './lane-picker.js';
import { runJob, type JobProgress, type RunContext, type RunOutcome } from '../run/job-runner.js';

export interface DispatcherOptions {
  ctx: RunContext;
  config: HeadroomConfig;
  redisUrl: string;
  /** Command connection for the fleet's pool backoffs. */
  redis: Redis | Cluster;
  workerId: string;
}

interface Active {
  job: Job;
  token: string;
  lane: InteractiveLane;
  abort: AbortController;
  done: Promise<void>;
}

const IDLE_SLEEP_MAX_MS = 100;
/**
 * A pool (or a lane) never backs off longer than this, so its front job is looked at again (shed
 * checks, limits that changed) even while the bucket would keep it waiting for minutes.
 */
const MAX_BACKOFF_MS = 1_000;
const FLEET_BACKOFF_REFRESH_MS = 100;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Dispatcher {
  private readonly lanes = new Map<InteractiveLane, BullWorker>();
  /** BullMQ never closes a connection it was handed: these are ours to close. */
  private readonly connections: (Redis | Cluster)[] = [];
  private readonly active = new Map<string, Active>();
  private readonly picker: LanePicker;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private slotWaiter: (() => void) | undefined;
  private lockTimer: NodeJS.Timeout | undefined;
  private lastFleetRefresh = 0;
  /** Per lane, pool -> until (epoch ms): this worker's and, refreshed, the fleet's. */
  private readonly poolBackoffs = new Map<InteractiveLane, Map<string, number>>(INTERACTIVE_LANES.map((lane) => [lane, new Map()]));
  private tokenSeq = 0;
  private batch: Queue | undefined;

  constructor(private readonly opts: DispatcherOptions) {
    const { config, ctx } = opts;
    this.picker = new LanePicker({
      order: config.dispatch.order,
      lanes: INTERACTIVE_LANES,
      weights: Object.fromEntries(INTERACTIVE_LANES.map((l) => [l, config.lanes[l].weight])) as Record<InteractiveLane, number>,
      emptyForMs: config.dispatch.emptyLanePollMs,
      now: ctx.now,
    });
  }

  async start(): Promise<void> {
    const { config, redisUrl } = this.opts;
    for (const lane of INTERACTIVE_LANES) {
      const k = laneKeys(config.redis.prefix, lane);
      const worker = new BullWorker(k.queueName, null, {
        connection: this.own(createRedis(redisUrl, 'worker')),
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
      worker.on('error', (err) => this.opts.ctx.logger.warn({ lane, err: err.message }, 'lane worker error'));
      await worker.waitUntilReady();
      await worker.startStalledCheckTimer();
      this.lanes.set(lane, worker);
    }
    this.lockTimer = setInterval(() => void this.renewLocks(), Math.max(500, Math.floor(config.dispatch.lockMs / 3)));
    this.loopDone = this.loop();
  }

  private own(conn: Redis | Cluster): Redis | Cluster {
    this.connections.push(conn);
    return conn;
  }

  get inFlight(): number {
    return this.active.size;
  }

  /** Stops taking jobs; lets in-flight calls finish for `graceMs`, then hands the rest back. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.slotWaiter?.();
    await this.loopDone;
    const all = [...this.active.values()];
    const finished = Promise.all(all.map((a) => a.done));
    const timedOut = await Promise.race([finished.then(() => false), sleep(graceMs).then(() => true)]);
    if (timedOut) {
      for (const a of this.active.values()) a.abort.abort();
      await Promise.race([Promise.all([...this.active.values()].map((a) => a.done)), sleep(5_000)]);
    }
    if (this.lockTimer) clearInterval(this.lockTimer);
    await Promise.all([...this.lanes.values()].map((w) => w.close(true).catch(() => {})));
    for (const conn of this.connections.splice(0)) conn.disconnect();
    await this.batch?.close();
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
        await this.refreshFleetBackoff();
        const got = await this.fetchOne();
        if (!got) {
          await sleep(Math.min(idle, Math.max(1, this.picker.msUntilNextOpen())));
          idle = Math.min(IDLE_SLEEP_MAX_MS, idle * 2);
          continue;
        }
        idle = 5;
        this.begin(got.job, got.lane, got.token);
      } catch (err) {
        ctx.logger.error({ err: (err as Error).message }, 'dispatch loop error; retrying');
        await sleep(500);
      }
    }
  }

  private async fetchOne(): Promise<{ job: Job; lane: InteractiveLane; token: string } | undefined> {
    for (const lane of this.picker.candidates()) {
      const blocked = this.backedOffPools(lane);
      if (blocked.length > 0) {
        const front = await bringRunnableToFront(this.opts.redis, this.opts.config.redis.prefix, lane, blocked);
        if (front === 'blocked') {
          this.picker.backOff(lane, this.msUntilFirstPoolReopens(lane));
          continue;
        }
      }
      const token = `${this.opts.workerId}:${++this.tokenSeq}`;
      const job = await this.lanes.get(lane)!.getNextJob(token, { block: false });
      if (job) return { job, lane, token };
      this.picker.markEmpty(lane);
    }
    return undefined;
  }

  private backedOffPools(lane: InteractiveLane): string[] {
    const now = this.opts.ctx.now();
    const pools = this.poolBackoffs.get(lane)!;
    for (const [pool, until] of pools) if (until <= now) pools.delete(pool);
    return [...pools.keys()];
  }

  private msUntilFirstPoolReopens(lane: InteractiveLane): number {
    const until = Math.min(...this.poolBackoffs.get(lane)!.values());
    return Math.max(1, until - this.opts.ctx.now());
  }

  private begin(job: Job, lane: InteractiveLane, token: string): void {
    const abort = new AbortController();
    const entry: Active = { job, token, lane, abort, done: Promise.resolve() };
    entry.done = this.process(entry).finally(() => {
      this.active.delete(job.id!);
      this.opts.ctx.metrics.inFlight.set(this.active.size);
      const waiter = this.slotWaiter;
      this.slotWaiter = undefined;
      waiter?.();
    });
    this.active.set(job.id!, entry);
    this.opts.ctx.metrics.inFlight.set(this.active.size);
  }

  private async process({ job, token, lane, abort }: Active): Promise<void> {
    const { ctx } = this.opts;
    const progress = readProgress(job.progress);
    let outcome: RunOutcome;
    try {
      outcome = await runJob(ctx, job.data as LlmJob, { id: job.id!, lane, enqueuedAt: job.timestamp, progress }, abort.signal);
    } catch (err) {
      // Not a provider failure (e.g. Redis away mid-acquire): park the job briefly; if Redis is
      // gone entirely, the lock expires and the stalled check hands the job to another worker.
      ctx.logger.error({ jobId: job.id, lane, err: (err as Error).message }, 'job run error');
      outcome = { kind: 'delay', delayMs: 1_000, progress };
    }
    await this.apply(job, token, lane, outcome);
  }

  private async apply(job: Job, token: string, lane: InteractiveLane, outcome: RunOutcome): Promise<void> {
    const { ctx } = this.opts;
    const attempt = async (fn: () => Promise<unknown>) => {
      // Redis may blink: retry the transition while our lock is still ours.
      for (let i = 0; ; i++) {
        try {
          await fn();
          return;
        } catch (err) {
          if (i >= 5) throw err;
          await sleep(200 * 2 ** i);
        }
      }
    };
    try {
      switch (outcome.kind) {
        case 'completed':
          await attempt(() => job.moveToCompleted(outcome.result, token, false));
          ctx.metrics.jobs.inc({ lane, outcome: 'completed' });
          ctx.stats.jobEnded({ lane, outcome: 'completed', waitMs: outcome.result.timings.waitMs, model: outcome.result.model, usage: outcome.result.usage, costUsd: outcome.result.cost.usd });
          return;
        case 'failed': {
          await attempt(() => job.moveToFailed(new Error(outcome.reason), token, false));
          const ended = outcome.reason.startsWith('SHED') ? 'shed' : 'failed';
          ctx.metrics.jobs.inc({ lane, outcome: ended });
          ctx.stats.jobEnded({ lane, outcome: ended });
          if (ended === 'shed') await this.countShed(lane);
          ctx.logger.info({ jobId: job.id, lane, reason: outcome.reason }, 'job failed');
          return;
        }
        case 'requeue':
          await this.saveProgress(job, outcome.progress);
          await attempt(() => job.moveToWait(token));
          await this.backOffPool(lane, poolOf(this.opts.config, (job.data as LlmJob).request.model), Math.min(outcome.waitMs, MAX_BACKOFF_MS));
          return;
        case 'to_batch': {
          let movedTo: string;
          try {
            movedTo = await handOffToBatch(this.batchQueue(), this.opts.redis, this.opts.config.redis.prefix, job.id!, job.data as LlmJob);
          } catch (err) {
            // The batch lane refused it (full, say): the job is shed like any other.
            return await this.apply(job, token, lane, { kind: 'failed', reason: `SHED: ${outcome.reason}; the batch lane refused it: ${(err as Error).message}` });
          }
          await attempt(() => job.moveToCompleted({ movedTo, reason: outcome.reason }, token, false));
          ctx.metrics.jobs.inc({ lane, outcome: 'shed' });
          ctx.stats.jobEnded({ lane, outcome: 'shed' });
          await this.countShed(lane);
          ctx.logger.info({ jobId: job.id, lane, movedTo }, 'job shed to the batch lane');
          return;
        }
        case 'delay':
          await this.saveProgress(job, outcome.progress);
          await attempt(() => job.moveToDelayed(ctx.now() + outcome.delayMs, token));
          return;
        case 'aborted':
          await this.saveProgress(job, outcome.progress);
          await attempt(() => job.moveToWait(token));
          return;
      }
    } catch (err) {
      ctx.logger.error({ jobId: job.id, lane, outcome: outcome.kind, err: (err as Error).message }, 'could not record the job outcome; its lock will expire and it runs again');
    }
  }

  /** The lane's all-time shed counter (admission refusals are counted by the admission script). */
  private async countShed(lane: InteractiveLane): Promise<void> {
    const key = laneKeys(this.opts.config.redis.prefix, lane).stats;
    await this.opts.redis.multi().hincrby(key, 'shed', 1).hincrby(key, 'shed:waiting', 1).exec().catch(() => {});
  }

  private batchQueue(): Queue {
    if (!this.batch) {
      const k = laneKeys(this.opts.config.redis.prefix, 'batch');
      this.batch = new Queue(k.queueName, { prefix: k.bullPrefix, connection: this.opts.redis as Redis });
    }
    return this.batch;
  }

  private async saveProgress(job: Job, progress: JobProgress): Promise<void> {
    if (readProgress(job.progress).attempts !== progress.attempts) await job.updateProgress(progress as unknown as object);
  }

  private async renewLocks(): Promise<void> {
    const lockMs = this.opts.config.dispatch.lockMs;
    await Promise.all(
      [...this.active.values()].map(({ job, token }) =>
        job.extendLock(token, lockMs).catch((err: Error) => this.opts.ctx.logger.warn({ jobId: job.id, err: err.message }, 'lock renewal failed')),
      ),
    );
  }

  /** Backs the pool off in the lane, here and (for the other workers' next refresh) fleet-wide. */
  private async backOffPool(lane: InteractiveLane, pool: string, ms: number): Promise<void> {
    if (ms < 1) return;
    const until = this.opts.ctx.now() + ms;
    this.noteBackoff(lane, pool, until);
    const key = laneKeys(this.opts.config.redis.prefix, lane).poolBackoff;
    // GT: a shorter wait learnt later never cuts a longer one short. The key outlives no backoff.
    await this.opts.redis.multi().zadd(key, 'GT', until, pool).pexpire(key, MAX_BACKOFF_MS * 2).exec().catch(() => {});
  }

  private noteBackoff(lane: InteractiveLane, pool: string, until: number): void {
    const pools = this.poolBackoffs.get(lane)!;
    if (until > (pools.get(pool) ?? 0)) pools.set(pool, until);
  }

  /**
   * Learns other workers' pool backoffs, at most every 100 ms. One command per lane, sent
   * together: each lane is its own hash slot, and a Redis Cluster pipeline must stay within one
   * slot; on a single node ioredis writes them back to back, so it is still one round trip.
   * Times are the workers' clocks, so one learnt from the fleet is held to at most a second from
   * now here: a worker whose clock runs ahead cannot back the others off for longer.
   */
  private async refreshFleetBackoff(): Promise<void> {
    const now = this.opts.ctx.now();
    if (now - this.lastFleetRefresh < FLEET_BACKOFF_REFRESH_MS) return;
    this.lastFleetRefresh = now;
    const prefix = this.opts.config.redis.prefix;
    const all = await Promise.all(
      INTERACTIVE_LANES.map((lane) => this.opts.redis.zrangebyscore(laneKeys(prefix, lane).poolBackoff, now, '+inf', 'WITHSCORES').catch(() => [] as string[])),
    );
    all.forEach((entries, i) => {
      for (let j = 0; j < entries.length; j += 2) this.noteBackoff(INTERACTIVE_LANES[i]!, entries[j]!, Math.min(Number(entries[j + 1]), now + MAX_BACKOFF_MS));
    });
  }
}

function readProgress(progress: unknown): JobProgress {
  if (typeof progress === 'object' && progress !== null && typeof (progress as JobProgress).attempts === 'number') return progress as JobProgress;
  return { attempts: 0 };
}
