/**
 * The producer: validates, admits against the lane cap, adds the job, and waits for results.
 */
import type { Queue } from 'bullmq';
import {
  coalesceKeyOf,
  asRedisError,
  failureOf,
  failureText,
  ClosedError,
  publishCancel,
  apiOf,
  handOffJobId,
  QueueFullError,
  QuotaExceededError,
  rememberHandOff,
  releaseFailedHandOff,
  ShedError,
  JobStoppingError,
  idempotentJobId,
  LANE_DEFAULTS,
  laneKeys,
  laneOfJobId,
  laneOfPriority,
  newJobId,
  parseJob,
  cancelIfNotStarted,
  REPLY_TO_OPTION,
  CACHE_TTL_OPTION,
  untilReady,
  answeredWithin,
  JobNotFoundError,
  RedisUnavailableError,
  TimeoutError,
  type Added,
  type JobFailure,
  type Lane,
  type LaneEntry,
  type LlmJob,
  type LlmJobInput,
  type LlmResult,
  type CancelOutcome,
  type LoggerLike,
  type RedisInput,
} from '@headroom/queue';
import type { EnqueueBatcher } from './internal/enqueue-batcher.js';
import { EventReader } from './internal/event-reader.js';
import { JobEventStream, type JobStream } from './internal/job-stream.js';
import { StreamGuard } from './internal/stream-guard.js';
import { checkTimeoutMs, movedTo, ResultWaiter, type WaitMode } from './internal/result-waiter.js';
import { resolveProducerOptions } from './internal/producer-options.js';
import { sharedClient, type SharedClient } from './internal/shared-client.js';
import { StartDeadline } from './internal/start-deadline.js';

/**
 * Checked at construction (internal/producer-options.ts): a missing or malformed option, or one
 * not listed here, throws `ConfigError` (`CONFIG_INVALID`) naming each, before any connection.
 */
export interface ProducerOptions {
  /**
   * A `redis://`, `rediss://`, `redis-cluster://` or `rediss-cluster://` URL, or an ioredis
   * connection you own (created with `enableOfflineQueue: false`). Producers in one process given
   * the same URL, or the same connection, share it and batch their enqueues together; the last to
   * close disconnects a connection made from a URL. Required: none (`process.env.REDIS_URL!` with
   * the variable unset) is `CONFIG_INVALID`.
   */
  redis: RedisInput;
  /** Key prefix shared with the fleet: 1-32 letters, digits, `_` or `-`, as its `redis.prefix`. @default 'hr' */
  prefix?: string;
  /** Largest serialized job accepted, in bytes: a positive integer. @default 1 MiB */
  maxJobBytes?: number;
  /** How long a call waits for Redis before failing with REDIS_UNAVAILABLE: a positive integer of ms. @default 2000 */
  connectTimeoutMs?: number;
  /**
   * With `coalesce: true`, identical jobs share one job while it is in flight and also, for this
   * long after it completed, its result (a result cache; a streamed join is streamed the answer,
   * from the result once the job's events expired). A failure is not kept: the next identical job runs afresh.
   * A non-negative integer of ms. @default 0: only jobs in flight are shared
   */
  resultCacheTtlMs?: number;
  /**
   * How long finished jobs (and so their results and idempotency keys) are kept: whichever of
   * age and count is reached first, per lane. The counts keep Redis flat under steady load (an age
   * alone holds a whole day of jobs). Non-negative integers.
   * @default { completedSec: 86400, failedSec: 604800, completedCount: 10000, failedCount: 10000 }
   */
  retention?: { completedSec?: number; failedSec?: number; completedCount?: number; failedCount?: number };
  /**
   * Where the producer says that its Redis connection was lost (warn, `redis connection lost;
   * reconnecting`, once per outage) and is back (info, `redis connection back`), each with
   * `connection: 'producer'` and the error (not made yet, Redis down as it starts: `redis
   * connection could not be made; retrying`, then `redis connection made`). Any object with `warn`, `info` and `error` taking
   * (fields, message): a pino logger, or `console`. Producers sharing a connection and a logger
   * log one pair of lines. Without one nothing is printed: calls that need Redis while it is away
   * reject `REDIS_UNAVAILABLE`, as with one. @default none
   */
  logger?: LoggerLike;
}

export interface ResultOptions {
  /**
   * Positive ms (any length: longer than a Node timer's 2^31-1 is fine), or Infinity. The wait never
   * outlasts it: with Redis out of reach it keeps waiting (a result that arrives in time is
   * delivered) and rejects TIMEOUT at this time, its `cause` a `RedisUnavailableError`
   * (`RedisRefusedError` when Redis refuses the connection). @default 60000
   */
  timeoutMs?: number;
  /**
   * On timeout, also remove the job if it has not started, so no provider call is made for an
   * answer nobody waits for. The `TimeoutError` then says `cancelled: true`; a job already running
   * is left to finish (`cancelled: false`). One not started that other callers share is left to
   * them, this caller's share given back (`cancelled: true`). @default false
   */
  cancelOnTimeout?: boolean;
  /**
   * Aborting stops the wait (the result rejects with the signal's reason) and withdraws the job
   * for this caller if it has not started: removed, or, when other callers share it, this
   * caller's share given back. A job already running is left to finish (a plain call sent cannot
   * be taken back). `run()` with a signal already aborted throws its reason before enqueueing.
   */
  signal?: AbortSignal;
}

export interface StreamOptions {
  /**
   * Aborting cancels the job: removed if it has not started, its provider call stopped if it has;
   * a job other callers share (coalesced, an idempotent repeat) is left to them.
   */
  signal?: AbortSignal;
  /**
   * How long this caller waits for the stream to start (its first event: the job's wait in its lane,
   * its retries, and the model's time to its first output): then `started()`, the iteration and
   * `result()` reject TIMEOUT, as `result({ timeoutMs })` does, and, as there, the job is left to
   * run on (its result can still be read: `handleOf(id).result()`) unless `cancelOnTimeout`. Once
   * started, a stream lasts as long as its worker lets it (`providers.<p>.streamIdleMs` of silence,
   * `streamTimeoutMs` in all, each ending it `STREAM_FAILED`); one whose worker died or stopped
   * writing ends `STREAM_FAILED` (`streamCut: 'WORKER_LOST'`) some 30 s after its worker's last
   * heartbeat, never hangs. @default 600000
   */
  timeoutMs?: number;
  /**
   * On timeout, also cancel the job for this caller, as an abort does: removed if it has not
   * started, its streamed call stopped if its worker took it (the bucket keeps only the tokens
   * produced; no one reads the rest); a job other callers share is left to them, this caller's
   * share given back. The `TimeoutError` then says `cancelled: true` (false: the job had ended or
   * was gone). @default false
   */
  cancelOnTimeout?: boolean;
}

export interface CancelOptions {
  /** Only remove the job if it has not started; leave a running one alone (a share in it too). @default false */
  ifNotStarted?: boolean;
  /**
   * The caller only stops waiting (its client left, its stream was aborted, its wait timed out):
   * a job that other callers share (an idempotent repeat or a coalesced join of it) is left to
   * them, and only this caller's share is given back. What `stream()`'s abort, `cancelOnTimeout`
   * and the gateway do. @default false (an explicit cancel stops the job for everyone)
   */
  keepShared?: boolean;
}

export interface JobHandle {
  id: string;
  lane: Lane;
  /** True when an earlier job was returned instead of a new one: same idempotency key, or coalesced. */
  existing: boolean;
  /**
   * Resolves with the job's result; rejects with JobFailedError (reason, code) or TimeoutError
   * (`cancelOnTimeout` removes a job not started). A job enqueued with `maxWaitMs` and not started
   * within it of this caller's enqueue is withdrawn for this caller, and this rejects then with
   * `DEADLINE_EXCEEDED`: a caller that joined a job another made (coalesced, an idempotent repeat)
   * keeps its own deadline.
   */
  result(opts?: ResultOptions): Promise<LlmResult>;
}

/** A handle as this producer holds it: with the caller's one way out of the job. */
interface CallerHandle extends JobHandle {
  /** `until`: ends the wait with its reason, leaving the job as it is (a stream's own bounds: stream-guard.ts). */
  result(opts?: ResultOptions & { until?: AbortSignal }): Promise<LlmResult>;
  /**
   * Withdraws this caller: the job removed if no one else shares it, else this caller's share
   * given back (`always`: a running job's call asked to stop, `stopping`). A caller leaves once: a
   * later leave (a deadline after a client left, an abort after a deadline) gives back nothing
   * more. Undefined when Redis could not be reached.
   */
  leave(how: Leave): Promise<Withdrawal | undefined>;
}

/**
 * How a withdrawal went: `cancelIfNotStarted`'s outcome, or `stopping` when a running job's call
 * was asked to stop (flagged cancelled: lane-cancel.ts).
 */
type Withdrawal = CancelOutcome | 'stopping';

/** `cancelIfNotStarted`'s options, as a caller leaving (or `cancel`) sets them. */
type WithdrawOptions = { keepShared: boolean; ifNotStarted: boolean; atDeadline?: boolean; callerDeadline?: string };

/** Out of the job: it no longer runs for this caller. */
const isOut = (w: Withdrawal | undefined): boolean => w === 'removed' || w === 'shared';

/**
 * `always`: started or not (a stream aborted: its call is stopped); `waiting`: only if not running
 * now (a caller that stopped waiting); `deadline`: the caller's start deadline, which leaves a job
 * a worker took before and no one else shares to that worker (lane-cancel.ts).
 */
type Leave = 'always' | 'waiting' | 'deadline';

/** The caller's own start deadline: the job's `maxWaitMs` from this caller's enqueue. */
interface StartBy {
  maxWaitMs: number;
  enqueuedAt: number;
}

export type JobState = 'waiting' | 'active' | 'delayed' | 'completed' | 'failed' | 'unknown';

export interface JobInfo {
  id: string;
  lane: Lane;
  state: JobState;
  job: LlmJob;
  result?: LlmResult;
  /** Why it failed: a stable code and a message (set once the job has failed). */
  failure?: JobFailure;
  /** `CODE: message`, for display, as Bull Board shows it. */
  failedReason?: string;
  /** When the caller enqueued it (for a job shed to the batch lane, its first enqueue). */
  enqueuedAt: number;
  startedAt?: number;
  finishedAt?: number;
  /**
   * Set when the id asked for is a LOW job (`onShed: 'batch'`) shed to the batch lane while it
   * waited: the job it became is reported (its `id`, `lane`, state and, once done, its result),
   * and this is the id asked for.
   */
  movedFrom?: string;
}

const DEFAULT_RESULT_TIMEOUT_MS = 60_000;
/** The providers' batch completion window: the longest a BATCH job waits for its batch to end. */
const BATCH_WINDOW_SEC = 24 * 3600;
const DEFAULT_STREAM_TIMEOUT_MS = 600_000;
/**
 * How long an idempotent repeat whose job is stopping (cancelled by its last caller as it ran) is
 * sent again before `JobStoppingError`: a live worker stops the job within milliseconds of the
 * cancel; a dead one's job ends only once its lock lapses, which is not worth waiting out here.
 */
const STOPPING_RESEND_MS = 5_000;

interface Retention {
  removeOnComplete: { age: number; count: number };
  removeOnFail: { age: number; count: number };
}

function toJobState(raw: string): JobState {
  if (raw === 'waiting' || raw === 'wait' || raw === 'prioritized' || raw === 'paused') return 'waiting';
  if (raw === 'active' || raw === 'delayed' || raw === 'completed' || raw === 'failed') return raw;
  return 'unknown';
}

export class Producer {
  private readonly client: SharedClient;
  private readonly prefix: string;
  private readonly maxJobBytes: number;
  private readonly connectTimeoutMs: number;
  /** BullMQ's retention options for jobs of every lane but BATCH, and for BATCH; built once, passed per job. */
  private readonly retention: Retention;
  private readonly batchRetention: Retention;
  /** How long a finished BATCH job is kept at most (its retention's longer age). */
  private readonly batchKeptSec: number;
  private readonly resultCacheTtlMs: number;
  private readonly waiter: ResultWaiter;
  private readonly batcher: EnqueueBatcher;
  /** The lanes' blocking readers: streamed jobs' events, and this producer's replies. */
  private readonly events: EventReader;
  /** Per lane: its retention with this producer's `hrReplyTo`, built once. */
  private readonly replyOpts = new Map<Lane, LaneEntry['opts']>();
  private closed = false;
  private pendingReady: Promise<void> | undefined;
  /** Stops this producer's outage lines (its `logger` option), on close. */
  private readonly stopOutageLog: (() => void) | undefined;

  /** Throws `ConfigError` (`CONFIG_INVALID`) naming every bad option, before any connection is made. */
  constructor(options: ProducerOptions) {
    const opts = resolveProducerOptions(options);
    this.prefix = opts.prefix;
    this.maxJobBytes = opts.maxJobBytes;
    this.connectTimeoutMs = opts.connectTimeoutMs;
    this.retention = {
      removeOnComplete: { age: opts.retention.completedSec, count: opts.retention.completedCount },
      removeOnFail: { age: opts.retention.failedSec, count: opts.retention.failedCount },
    };
    // A batch settles up to a whole lane's cap of jobs at once: keep that many results in the BATCH
    // lane, or the first answers of a large batch would be trimmed before anyone read them.
    const atLeastBatchCap = (r: { age: number; count: number }) => ({ age: r.age, count: Math.max(r.count, LANE_DEFAULTS.batch.cap) });
    this.batchRetention = { removeOnComplete: atLeastBatchCap(this.retention.removeOnComplete), removeOnFail: atLeastBatchCap(this.retention.removeOnFail) };
    this.batchKeptSec = Math.max(opts.retention.completedSec, opts.retention.failedSec);
    this.resultCacheTtlMs = opts.resultCacheTtlMs;
    this.client = sharedClient(opts.redis);
    this.stopOutageLog = opts.logger ? this.client.reportOutagesTo(opts.logger) : undefined;
    this.batcher = this.client.batcher(this.prefix);
    this.events = new EventReader(this.client.redis, this.prefix);
    this.waiter = new ResultWaiter(this.client.redis, this.prefix, this.events);
  }

  /**
   * Validates and enqueues a job. Throws JobValidationError / PayloadTooLargeError before anything
   * is written, QueueFullError when the lane is at its cap, RedisUnavailableError when Redis is away,
   * RedisRefusedError when it refuses the connection (a wrong password, a database it does not have).
   */
  async enqueue(input: LlmJobInput): Promise<JobHandle> {
    return this.enqueueFor(input);
  }

  private async enqueueFor(input: LlmJobInput): Promise<CallerHandle> {
    this.assertOpen();
    const enqueuedAt = Date.now();
    const { job } = parseJob(input, this.maxJobBytes);
    const lane: Lane = job.sla === 'none' ? 'batch' : laneOfPriority(job.priority);
    const id = job.idempotencyKey ? idempotentJobId(lane, job.idempotencyKey, job.tenant, job.scope) : newJobId(lane);
    try {
      await this.ready();
    } catch (err) {
      throw this.redisError(err);
    }
    // A job in an interactive lane asks its worker to send its result here; a BATCH job is
    // settled by the batcher, and its waiter reads the lane's events.
    const replyTo = lane === 'batch' ? undefined : this.waiter.replyTo(lane);
    const fresh = this.waiter.isLive(lane);
    const add = () => this.addPastStopping(() => this.addOrWithdrawLate(this.batcher.submit(lane, id, job, this.optionsOf(lane, job, replyTo)), lane, id));
    let added: Added;
    try {
      added = await add();
      // A key's repeat answered with the BATCH job its run was shed to, whose batch failed in a way
      // that told its caller to resubmit (expired, errored, canceled): run it again, as a repeat
      // does after such a failure of the key's own job (hand-off-rerun.ts).
      if (job.idempotencyKey !== undefined && added.existing && lane !== 'batch') {
        const handOff = laneOfJobId(added.id) === 'batch' ? added.id : await this.movedToOf(added.id);
        if (handOff !== undefined && (await this.answered(releaseFailedHandOff(this.client.redis, this.prefix, lane, id, handOff), `the enqueue of ${id}`))) added = await add();
      }
    } catch (err) {
      if (err instanceof ShedError && job.onShed === 'batch') return this.shedToBatch(lane, id, job, err);
      throw err;
    }
    const { id: jobId, existing } = added;
    // An idempotent repeat of a job moved to the BATCH lane at admission is answered with that job.
    const at = laneOfJobId(jobId) ?? lane;
    // A job that was there already (idempotent repeat, coalesced) replies to whoever enqueued it.
    // A BATCH job's wait is for its batch, not for a start.
    const startBy = at !== 'batch' && job.maxWaitMs !== undefined ? { maxWaitMs: job.maxWaitMs, enqueuedAt } : undefined;
    return this.handle(jobId, at, existing, existing ? 'read' : replyTo !== undefined ? 'reply' : fresh ? 'fresh' : 'read', startBy, added.callerDeadline);
  }

  /**
   * The add's answer within `connectTimeoutMs`. Past it the caller is told REDIS_UNAVAILABLE, a
   * retryable error, but Redis may still apply the add when it answers (a stall, a pause): the
   * job, or the caller's share of one, is then given back as the caller's leaving gives it back
   * (`leave('always')`), so the caller's retry does not run the job a second time with nobody
   * waiting on the first (through the gateway: two provider calls for one answer).
   */
  private async addOrWithdrawLate(submitted: Promise<Added>, lane: Lane, id: string): Promise<Added> {
    let answered = false;
    const late = submitted.finally(() => {
      answered = true;
    });
    try {
      return await this.answered(late, `the enqueue of ${id}`);
    } catch (err) {
      if (!answered && err instanceof RedisUnavailableError) {
        late.then(
          (added) => void this.handle(added.id, laneOfJobId(added.id) ?? lane, added.existing, 'read', undefined, added.callerDeadline).leave('always'),
          () => undefined,
        );
      }
      throw err;
    }
  }

  /**
   * Adds, sending an idempotent repeat again while the key's job is stopping (add-9.lua -10: it
   * was running when its last caller cancelled it). Joined, the repeat would end CANCELLED with
   * it; sent once that job has ended, it runs the job again, as a repeat after a cancel does.
   */
  private async addPastStopping(add: () => Promise<Added>): Promise<Added> {
    const until = Date.now() + STOPPING_RESEND_MS;
    for (let pauseMs = 5; ; pauseMs = Math.min(pauseMs * 2, 250)) {
      try {
        return await add();
      } catch (err) {
        if (!(err instanceof JobStoppingError) || Date.now() + pauseMs > until) throw err;
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    }
  }

  /**
   * A job that asked `onShed: 'batch'`, refused SHED at admission, goes where a worker would have
   * moved it had it been shed a moment after: the BATCH lane, under the id a worker's hand-off
   * gives it (`handOffJobId`: an idempotent job's repeat while its pool sheds finds the same
   * job), through the BATCH lane's own admission (its caps, byte cap and the tenant's quota
   * there). Refused there too, it is shed, as a worker sheds a job the batch lane refuses. (A
   * streamed job cannot ask for it: the job's validation refuses the pair.)
   */
  private async shedToBatch(lane: Lane, originalId: string, job: LlmJob, shed: ShedError): Promise<CallerHandle> {
    const moved: LlmJob = { ...job, sla: 'none' };
    const fresh = this.waiter.isLive('batch');
    try {
      const handOff = handOffJobId(originalId);
      const { id, existing } = await this.addOrWithdrawLate(this.batcher.submit('batch', handOff, moved, this.optionsOf('batch', moved, undefined)), 'batch', handOff);
      // The key's repeats find this job also once the pool no longer sheds, for as long as it may
      // wait for its batch (the batch APIs' 24 h window) and is then kept. The job is accepted
      // whether this lands or not: lost (Redis blinked), only such a repeat would run it again.
      if (job.idempotencyKey !== undefined) {
        await rememberHandOff(this.client.redis, this.prefix, lane, originalId, id, job, this.batchKeptSec + BATCH_WINDOW_SEC).catch(() => {});
      }
      return this.handle(id, 'batch', existing, existing || !fresh ? 'read' : 'fresh');
    } catch (err) {
      // Only the batch lane's room: anything else (Redis away, say) is what it is.
      if (!(err instanceof QueueFullError || err instanceof QuotaExceededError)) throw err;
      throw new ShedError(lane, `${shed.reason}; the batch lane refused it (onShed 'batch'): ${err.message}`, shed.retryAfterMs);
    }
  }

  /** Enqueues and waits for the result. */
  async run(input: LlmJobInput, opts: ResultOptions = {}): Promise<LlmResult> {
    // Before enqueueing: refused after it, the job would run while its caller saw an error.
    if (opts.timeoutMs !== undefined) checkTimeoutMs(opts.timeoutMs, 'run()');
    // An aborted signal, as stream()'s: enqueued and then withdrawn, a worker could take the job
    // in between and call the provider for nobody (a probe: 1 call for 10 such runs).
    opts.signal?.throwIfAborted();
    return (await this.enqueue(input)).result(opts);
  }

  /**
   * Enqueues the job as a streamed call (`request.stream` is set for you) and returns its stream:
   * iterate it for the provider's own events as they arrive (Anthropic SSE events' data, OpenAI
   * chunks), then read `result()`. Enqueue errors throw here, as from `enqueue`.
   *
   * ```ts
   * const stream = await producer.stream(job, { signal: req.signal });
   * for await (const event of stream) send(event);
   * const { usage, timings } = await stream.result();
   * ```
   */
  async stream(input: LlmJobInput, opts: StreamOptions = {}): Promise<JobStream> {
    opts.signal?.throwIfAborted();
    if (opts.timeoutMs !== undefined) checkTimeoutMs(opts.timeoutMs, 'stream()');
    const streamed = { ...input, request: { ...input.request, stream: true } } as LlmJobInput;
    const handle = await this.enqueueFor(streamed);
    // Closed while the enqueue was out: its job runs on, as a waiting result()'s does, and no
    // reader is opened for it (one opened now was never closed, and held the process open).
    this.assertOpen();
    const sub = this.events.subscribe(handle.lane, handle.id);
    const shared = handle.existing || input.coalesce === true || input.idempotencyKey !== undefined;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS;
    // The caller's bound is on the wait for the stream's start; then its worker bounds it (stream-guard.ts).
    const bounds = new AbortController();
    const guard = new StreamGuard({
      jobId: handle.id,
      startWithinMs: timeoutMs,
      redis: this.client.redis,
      prefix: this.prefix,
      answerWithinMs: this.connectTimeoutMs,
      timedOut: () => new TimeoutError(`waiting for the stream of job ${handle.id} to start`, timeoutMs, this.waiter.unreachable()),
      end: (err) => bounds.abort(err),
    });
    const result = handle.result({ timeoutMs: Number.POSITIVE_INFINITY, until: bounds.signal }).finally(() => guard.stop());
    return new JobEventStream({
      id: handle.id,
      lane: handle.lane,
      existing: handle.existing,
      api: apiOf(input),
      // A repeat's request is the job's own: the same key on another request is refused at enqueue.
      includeUsage: input.provider === 'openai' && input.api !== 'responses' && input.request.stream_options?.include_usage === true,
      sub,
      result: result.catch(async (err: unknown) => {
        // As result()'s cancelOnTimeout, and as an abort: a stream's call can be stopped mid-way.
        if (opts.cancelOnTimeout && err instanceof TimeoutError) {
          const w = await handle.leave('always');
          err.cancelled = isOut(w) || w === 'stopping';
        }
        throw err;
      }),
      command: this.client.redis,
      deleteKey: shared ? undefined : laneKeys(this.prefix, handle.lane).jobEvents(handle.id),
      signal: opts.signal,
      cancel: async () => {
        await handle.leave('always');
      },
      seen: () => guard.seen(),
    });
  }

  /** A handle for a job enqueued earlier (by any producer). */
  handleOf(id: string): JobHandle {
    return this.handle(id, this.laneOf(id), true, 'read');
  }

  async getJob(id: string): Promise<JobInfo | null> {
    this.assertOpen();
    const lane = laneOfJobId(id);
    if (!lane) return null;
    try {
      await this.ready();
      return await this.answered(this.readJob(lane, id), `the read of ${id}`);
    } catch (err) {
      throw this.redisError(err);
    }
  }

  private async readJob(lane: Lane, id: string): Promise<JobInfo | null> {
    const job = await this.queue(lane).getJob(id);
    if (!job) return null;
    const state = toJobState(await job.getState());
    // A LOW job a worker shed to the batch lane completed with a pointer to the job it became:
    // that job is the caller's (its state, its result), as result() follows it.
    const to = state === 'completed' ? movedTo(job.returnvalue) : undefined;
    const toLane = to === undefined ? undefined : laneOfJobId(to);
    if (to !== undefined && toLane !== undefined) {
      const moved = await this.readJob(toLane, to);
      return moved && { ...moved, enqueuedAt: job.timestamp, movedFrom: id };
    }
    return {
      id,
      lane,
      state,
      job: job.data as LlmJob,
      ...(state === 'completed' ? { result: job.returnvalue as LlmResult } : {}),
      ...(job.failedReason ? failureFields(failureOf(job)) : {}),
      enqueuedAt: job.timestamp,
      ...(job.processedOn ? { startedAt: job.processedOn } : {}),
      ...(job.finishedOn ? { finishedAt: job.finishedOn } : {}),
    };
  }

  /**
   * Cancels a job. One that has not started is removed (true). One that a worker has taken is
   * asked to stop (false): its provider call is not sent if it has not been yet, a streamed call
   * is stopped and the job fails `CANCELLED`; a plain call already sent runs to its end (its
   * answer cannot be taken back). A batch job is removed (true) until its batch is sent, in its
   * leader's claim too; once the leader sends the batch it is refused (false): a provider cancels
   * only a whole batch, so the job runs to its end, nothing is flagged. False too for a
   * finished or unknown job. With `keepShared`, a
   * job other callers share is left to them and only this caller's share given back: true, since
   * it no longer runs for this caller (with `ifNotStarted`, only before it starts).
   */
  async cancel(id: string, opts: CancelOptions = {}): Promise<boolean> {
    return isOut(await this.withdraw(id, { keepShared: opts.keepShared === true, ifNotStarted: opts.ifNotStarted === true }));
  }

  /** `cancel`, and for a caller's start deadline (`atDeadline`, lane-cancel.ts). */
  private async withdraw(id: string, opts: WithdrawOptions): Promise<Withdrawal> {
    this.assertOpen();
    if (!laneOfJobId(id)) return 'missing';
    try {
      await this.ready();
      return await this.answered(this.stop(id, opts), `the cancel of ${id}`);
    } catch (err) {
      throw this.redisError(err);
    }
  }

  private async stop(id: string, opts: WithdrawOptions): Promise<Withdrawal> {
    // One call removes a job not started, gives back its admission counts and tells whoever
    // waits on it, in this process or another: its replies stream gets a `removed` entry, the
    // lane's events BullMQ's `removed` (lane-cancel.ts).
    const outcome = await cancelIfNotStarted(this.client.redis, this.prefix, id, opts);
    // Finished may mean shed to the batch lane while it waited: the job it became is the one to stop.
    if (outcome === 'finished') {
      const to = await this.movedToOf(id);
      if (to !== undefined) return this.stop(to, opts);
    }
    // Started and flagged cancelled in that same call (a batch job is never flagged: removed while
    // its claim is unsent, else it runs to its end and cancel says false): its worker is told at once.
    if (outcome !== 'flagged') return outcome;
    await publishCancel(this.client.redis, this.prefix, id);
    return 'stopping';
  }

  /** The BATCH job a finished job was handed to (`onShed: 'batch'`), or undefined. */
  private async movedToOf(id: string): Promise<string | undefined> {
    const lane = laneOfJobId(id);
    if (!lane || lane === 'batch') return undefined;
    const raw = await this.client.redis.hget(`${laneKeys(this.prefix, lane).jobKeyPrefix}${id}`, 'returnvalue');
    if (raw === null) return undefined;
    try {
      return movedTo(JSON.parse(raw));
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopOutageLog?.();
    await this.events.close();
    await this.waiter.close();
    await this.client.release();
  }

  /** BullMQ options for one job: retention, where its result goes, and deduplication for a coalesced job. */
  private optionsOf(lane: Lane, job: LlmJob, replyTo: string | undefined): LaneEntry['opts'] {
    let retention: LaneEntry['opts'] = lane === 'batch' ? this.batchRetention : this.retention;
    if (replyTo !== undefined) {
      let withReply = this.replyOpts.get(lane);
      if (!withReply) {
        withReply = { ...retention, [REPLY_TO_OPTION]: replyTo } as LaneEntry['opts'];
        this.replyOpts.set(lane, withReply);
      }
      retention = withReply;
    }
    if (!job.coalesce) return retention;
    // BullMQ keeps one job per deduplication id while it is in flight. The result cache is not
    // BullMQ's ttl, which counts from the add (a job waiting longer would stop coalescing): the
    // finish script keeps the key that long once the job completed. A streamed join after its
    // job's events expired is streamed the answer from the result (job-stream.ts), so a streamed
    // job's cache lasts as long as any other's.
    const cache = this.resultCacheTtlMs > 0 ? { [CACHE_TTL_OPTION]: this.resultCacheTtlMs } : {};
    return { ...retention, deduplication: { id: coalesceKeyOf(job) }, ...cache } as LaneEntry['opts'];
  }

  /**
   * `mode`: how its waiter learns the job ended (result-waiter.ts). `callerDeadline`: this caller's
   * in the job's list (`Added`), named when it leaves so a shared job's deadline moves back.
   */
  private handle(id: string, lane: Lane, existing: boolean, mode: WaitMode, startBy?: StartBy, callerDeadline?: string): CallerHandle {
    // One caller gives back one share: each leave waits for the one before, and once out, stays out.
    let leaving: Promise<Withdrawal | undefined> = Promise.resolve(undefined);
    const leave = (how: Leave): Promise<Withdrawal | undefined> => {
      const opts = { keepShared: true, ifNotStarted: how !== 'always', atDeadline: how === 'deadline', ...(callerDeadline === undefined ? {} : { callerDeadline }) };
      leaving = leaving.then((last) => (isOut(last) ? last : this.withdraw(id, opts).catch(() => undefined)));
      return leaving;
    };
    return {
      id,
      lane,
      existing,
      leave,
      result: async ({ timeoutMs = DEFAULT_RESULT_TIMEOUT_MS, cancelOnTimeout = false, signal, until } = {}) => {
        this.assertOpen();
        if (signal?.aborted) {
          void leave('waiting');
          throw signal.reason;
        }
        // Ends the wait itself once the caller is out of the job, so nothing waits on for it.
        const stop = signal || startBy || until ? new AbortController() : undefined;
        const deadline = startBy && new StartDeadline(id, startBy.maxWaitMs, startBy.enqueuedAt, () => leave('deadline').then(isOut), (err) => stop?.abort(err));
        const onAbort = () => {
          void leave('waiting');
          stop?.abort(signal?.reason);
        };
        const onUntil = () => stop?.abort(until?.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
        until?.addEventListener('abort', onUntil, { once: true });
        try {
          return await this.waiter.wait(lane, id, timeoutMs, mode, stop?.signal);
        } catch (caught) {
          const err = deadline ? await deadline.settle(caught) : caught;
          // Only a job not yet started is removed: one already running has been paid for.
          if (cancelOnTimeout && err instanceof TimeoutError) err.cancelled = isOut(await leave('waiting'));
          throw err;
        } finally {
          signal?.removeEventListener('abort', onAbort);
          until?.removeEventListener('abort', onUntil);
          deadline?.clear();
        }
      },
    };
  }

  private laneOf(id: string): Lane {
    const lane = laneOfJobId(id);
    if (!lane) throw new JobNotFoundError(id);
    return lane;
  }

  private queue(lane: Lane): Queue {
    return this.client.queue(this.prefix, lane);
  }

  /**
   * A call's Redis work, bounded by `connectTimeoutMs` once the connection is up: a Redis that
   * stalls (paused, stuck on a long command, a network black hole) fails the call
   * `REDIS_UNAVAILABLE` instead of holding it for the stall's length.
   */
  private answered<T>(work: Promise<T>, what: string): Promise<T> {
    return answeredWithin(work, this.connectTimeoutMs, what);
  }

  /** One wait shared by every call made while the connection comes up. */
  private ready(): Promise<void> {
    if (this.client.redis.status === 'ready') return Promise.resolve();
    this.pendingReady ??= untilReady(this.client.redis, { waitMs: this.connectTimeoutMs }).finally(() => {
      this.pendingReady = undefined;
    });
    return this.pendingReady;
  }

  /**
   * What a call that failed on Redis throws: CLOSED when this producer was closed while it was out
   * (its connections closed under it; Redis was not the one to blame, where it read
   * REDIS_UNAVAILABLE, "the connection was closed before Redis answered").
   */
  private redisError(err: unknown): unknown {
    return this.closed ? new ClosedError('this Producer') : asRedisError(err);
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('this Producer');
  }
}

function failureFields(failure: JobFailure): Pick<JobInfo, 'failure' | 'failedReason'> {
  return { failure, failedReason: failureText(failure) };
}
