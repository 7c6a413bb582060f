/**
 * The one place Redis keys are built. Every key of one lane, and every key of one bucket pool,
 * carries the same hash tag so each Lua script touches a single Redis Cluster slot.
 *
 * BullMQ builds its own keys as `${bullPrefix}:${queueName}:${suffix}`; we hand it the hash-tagged
 * `bullPrefix` (never an ioredis `keyPrefix`, which BullMQ does not support) and mirror the few
 * BullMQ keys our own scripts read.
 */

export const DEFAULT_PREFIX = 'hr';

/**
 * What a key prefix may be (config's `redis.prefix`, a producer's `prefix`): it goes inside every
 * key's hash tag, where a `{` or `}` would cut the tag and scatter a lane's keys over slots.
 */
export const PREFIX_PATTERN = /^[\w-]{1,32}$/;

const tag = (prefix: string, scope: string): string => `{${prefix}:${scope}}`;

export interface LaneKeys {
  /** Pass as BullMQ's `prefix` option for this lane's Queue/Worker/QueueEvents. */
  bullPrefix: string;
  /** The BullMQ queue name. */
  queueName: string;
  /** BullMQ's job hashes are `${jobKeyPrefix}${jobId}`. */
  jobKeyPrefix: string;
  /**
   * What Headroom's own lane keys start with. The lane scripts (add, release, return) build
   * `settings`, `models`, `output-caps`, `shedding`, `stats`, `unfinished`, `usage`, `returning`,
   * `idem-alias:<id>`, `cancelled:<id>` and `fair` from it, with the same suffixes, and `prioritized` and `delayed` from `wait`: keep
   * them in step.
   */
  ownPrefix: string;
  wait: string;
  prioritized: string;
  delayed: string;
  active: string;
  meta: string;
  /** BullMQ's other lane keys, for the scripts that embed its moves (lane-return.ts). */
  stalled: string;
  paused: string;
  limiter: string;
  /**
   * BullMQ's ZSET that wakes blocked workers: member `0` (score 0) when a job is ready, `1` scored
   * with the next delayed job's time. The dispatcher blocks on the four lanes' markers when idle.
   */
  marker: string;
  /** BullMQ's events STREAM of the lane (completed, failed, ...), which result waiters read. */
  events: string;
  pc: string;
  completed: string;
  failed: string;
  /**
   * HASH of the fleet's settings for this lane (`cap`, `maxBytes`, `tenantMax:<tenant>`,
   * `tenantMax:*`), published by workers from config and re-published when missing. Admission
   * refuses while it is missing (fails closed) rather than admit against defaults.
   */
  settings: string;
  /**
   * HASH model -> `provider:pool`: the models the fleet serves, so producers refuse unknown ones,
   * and the pool each draws from, so admission can check that pool's shedding (one read).
   */
  models: string;
  /**
   * HASH model -> its configured `maxOutputTokens`, for the models that have one: what a request
   * with no output bound reserves, so admission refuses such a request for a model without one.
   */
  outputCaps: string;
  /**
   * HASH model -> its configured fallback ladder (`\n`-joined), for the models that have one: a
   * job waiting behind its primary's backed-off pool may be taken for a fallback (front-runnable).
   */
  fallbacks: string;
  /** HASH pool -> `untilMs:retryAfterMs:pressure`: new jobs for that pool are shed until then. */
  shedding: string;
  /**
   * HASH job id -> `<bytes>|<tenant>` of every unfinished job the lane admitted: what releasing
   * it gives back. An entry goes when its job is finished or gone (lua/release-1.lua), once.
   */
  unfinished: string;
  /**
   * HASH of the lane's unfinished totals, kept in step with `unfinished`: `bytes` (job data), and
   * `tenant:<tenant>` (that tenant's unfinished jobs; the field goes when it falls to 0, so an idle
   * tenant leaves nothing behind). The byte cap and the tenants' max-queued read it in O(1).
   */
  usage: string;
  /**
   * ZSET job id -> ms: jobs a worker took from the lane and must put back (told to wait, delayed)
   * while the lane was full. They keep their place against new jobs: admission counts them, so
   * the next free slot is theirs. Entries are refreshed by their holder and dropped when stale.
   */
  returning: string;
  /**
   * HASH of a fair lane's start-time fair queueing state: `base`, `v`, `top`, `seq` and
   * `t:<tenant>` finish tags (lua/includes/fair-queue.lua). Only tenants with work waiting.
   */
  fair: string;
  /** HASH of all-time counters per lane: `shed` (every shed), `shed:refused` (at admission), `shed:waiting`. */
  stats: string;
  /**
   * ZSET pool -> epoch ms: the lane's jobs for that pool are backed off fleet-wide until then (the
   * bucket told one of them to wait); the lane's jobs for other pools keep flowing. Beside them,
   * `@<pool>` -> when the bucket's wait ends and `+<pool>` -> that plus the pool's pace
   * (worker pool-backoff.ts).
   */
  poolBackoff: string;
  /**
   * STREAM of a streamed job's events, written by the worker as they arrive from the provider and
   * read by the producer or gateway waiting on the job (lua/relay-2.lua). It expires a while after
   * its last write, and its reader deletes it once read to the end.
   */
  jobEvents(jobId: string): string;
  /**
   * STRING `<job id>|<the job's idempotency digest>` (job-ids.ts idempotencyDigestOf; one written
   * before it holds the sha1 of the job's data): the job an idempotent job coalesced into, under the
   * id its key maps to (add-9.lua), so a repeat of that key finds that job after the coalescing
   * key is gone; or the BATCH job it was moved to when shed at admission (admission.ts
   * `rememberHandOff`). It lives as long as the job's retention.
   */
  idempotentAlias(jobId: string): string;
  /** STRING set while a job's caller has cancelled it: the relay refuses to write past it. */
  jobCancel(jobId: string): string;
  /**
   * STRING, short-lived: the failure (JSON) a job cancelled before it started ends with for its
   * waiters, written by the call that removes it (lua/cancel-3.lua). The job leaves no record, so
   * without it a waiter could not tell a cancel from a job gone any other way (JOB_NOT_FOUND).
   * Deleted when an idempotent job is added again under the id (lua/add-9.lua).
   */
  jobCancelled(jobId: string): string;
  /**
   * STRING counter of the jobs refused SHED at admission in one minute (Redis time, epoch ms /
   * 60,000), expiring after two hours (lua/add-9.lua): the fleet stats' windowed `shed` adds it,
   * as the workers count the sheds they make in the fleet's per-minute hash, which lives in
   * another hash slot, out of the add script's reach.
   */
  shedRefusedMinute(minute: number): string;
  /**
   * STREAM (one entry, short-lived) a process appends to wake its own blocked reader of this
   * lane's job events when it has a new stream to read (the reader blocks on it with the rest).
   */
  readerWake(readerId: string): string;
  /**
   * STREAM of the results of one producer's jobs in this lane (`hrReplyTo` in the job's options),
   * written by the worker in the same call that finishes the job (lua/finish-14.lua), or by the
   * call that cancels it before it started (lua/cancel-3.lua), and read by
   * that producer's lane reader: a waiting producer reads its own results, not every event of the
   * lane. Capped, expires a while after its last write, deleted when its producer closes.
   */
  replies(readerId: string): string;
}

const laneKeysCache = new Map<string, Readonly<LaneKeys>>();

/** Built once per (prefix, lane): every enqueue needs them. */
export function laneKeys(prefix: string, lane: string): Readonly<LaneKeys> {
  const cacheKey = `${prefix}\n${lane}`;
  let keys = laneKeysCache.get(cacheKey);
  if (!keys) {
    keys = Object.freeze(buildLaneKeys(prefix, lane));
    laneKeysCache.set(cacheKey, keys);
  }
  return keys;
}

function buildLaneKeys(prefix: string, lane: string): LaneKeys {
  const bullPrefix = tag(prefix, lane);
  const bull = (suffix: string) => `${bullPrefix}:${lane}:${suffix}`;
  const own = (suffix: string) => `${bullPrefix}:hr:${suffix}`;
  return {
    bullPrefix,
    queueName: lane,
    jobKeyPrefix: bull(''),
    ownPrefix: own(''),
    wait: bull('wait'),
    prioritized: bull('prioritized'),
    delayed: bull('delayed'),
    active: bull('active'),
    meta: bull('meta'),
    stalled: bull('stalled'),
    paused: bull('paused'),
    limiter: bull('limiter'),
    marker: bull('marker'),
    events: bull('events'),
    pc: bull('pc'),
    completed: bull('completed'),
    failed: bull('failed'),
    settings: own('settings'),
    models: own('models'),
    outputCaps: own('output-caps'),
    fallbacks: own('fallbacks'),
    shedding: own('shedding'),
    unfinished: own('unfinished'),
    usage: own('usage'),
    returning: own('returning'),
    fair: own('fair'),
    stats: own('stats'),
    poolBackoff: own('pool-backoff'),
    jobEvents: (jobId: string) => own(`events:${jobId}`),
    idempotentAlias: (jobId: string) => own(`idem-alias:${jobId}`),
    jobCancel: (jobId: string) => own(`cancel:${jobId}`),
    jobCancelled: (jobId: string) => own(`cancelled:${jobId}`),
    shedRefusedMinute: (minute: number) => own(`shed-refused:${minute}`),
    readerWake: (readerId: string) => own(`reader-wake:${readerId}`),
    replies: (readerId: string) => own(`replies:${readerId}`),
  };
}

export interface PoolKeys {
  /**
   * STRING of fourteen packed little-endian doubles: `ts`, the amount used at `ts` of rpm, itpm,
   * otpm and tpm, the limits learned from the providers' headers for the same four (0 = none), and
   * the grants per lane; see lua/includes/pool-state.lua. One read on the hot path serves all. Named `state`, not the
   * `bucket` hash of versions before it, so the two never meet one key (WRONGTYPE).
   */
  bucket: string;
  /** ZSET model -> cooldown end (ms, Redis time); the key expires with its last cooldown. */
  cooldowns: string;
  /** HASH of counters for the dashboard (grants per lane, waits per reason, never-fits, ...). */
  stats: string;
  /**
   * HASH model -> six packed doubles: the model's fleet-wide adaptive throttle and retry budget
   * (decayed call, success, first-call and retry counts; see lua/includes/model-throttle.lua).
   * In the pool's slot, so the acquire script checks and charges it with the pool.
   */
  throttle: string;
  /**
   * ZSET `<reservation id>|<output reserved>|<tenant>` -> when it stops counting (ms, Redis time):
   * the grants not yet settled or released, whose refunds may still come (lua/includes/in-flight.lua).
   * Expires with its last grant's entry.
   */
  inFlight: string;
  /**
   * Per-tenant bucket (`ts`, `rpm`, `tpm`) in the same slot as its pool, so one script checks
   * both. Tenants are many, so it expires once it would be full again (missing = full).
   */
  tenantBucket(tenant: string): string;
}

export function poolKeys(prefix: string, pool: string): PoolKeys {
  const t = tag(prefix, `pool:${pool}`);
  return {
    bucket: `${t}:state`,
    cooldowns: `${t}:cooldowns`,
    stats: `${t}:stats`,
    throttle: `${t}:throttle`,
    inFlight: `${t}:in-flight`,
    tenantBucket: (tenant: string) => `${t}:tenant:${tenant}`,
  };
}

/** Fleet-wide keys that belong to no lane or pool. */
export function fleetKeys(prefix: string) {
  const t = tag(prefix, 'fleet');
  return {
    /** Batcher leader lease: STRING `<worker id>|<fence>`, PX = the lease; renewed by its holder. */
    batchLeader: `${t}:batch-leader`,
    /** STRING counter: the fencing token, one more for every new lease. */
    batchFence: `${t}:batch-fence`,
    /** HASH provider batch id -> claim id: every batch the fleet submitted and has not settled. */
    batches: `${t}:batches`,
    /** ZSET claim id -> creation time (ms): the batcher's claims, open, submitting or submitted. */
    batchClaims: `${t}:batch-claims`,
    /** HASH of one claim: provider, model, lock token, times, intent, file and batch id. */
    batchClaim: (claimId: string) => `${t}:batch-claim:${claimId}`,
    /** SET of the job ids one claim holds (active in the BATCH lane under the claim's lock token). */
    batchClaimJobs: (claimId: string) => `${t}:batch-claim-jobs:${claimId}`,
    /** HASH worker id -> heartbeat JSON, for `headroom status`. */
    workers: `${t}:workers`,
    /** HASH gateway id -> heartbeat JSON, for the dashboard and `headroom status`. */
    gateways: `${t}:gateways`,
    /** HASH pool -> JSON of its latest pressure, for status, the dashboard and the other workers. */
    pressure: `${t}:pressure`,
    /** STRING worker id, PX a few seconds: the worker that computes the pools' pressure for the fleet (lease.ts). */
    pressureLeader: `${t}:pressure-leader`,
    /** STRING worker id, PX a few rounds: the worker that keeps the lanes' upkeep for the fleet (lane-upkeep.ts). */
    upkeepLeader: `${t}:upkeep-leader`,
    /**
     * Pub/sub channel of job ids whose caller cancelled them while they ran or were being taken:
     * the worker running one aborts it (before its provider call, or mid-stream).
     */
    cancelChannel: `${t}:cancel`,
    /** HASH of fleet-wide counters for one minute (calls, jobs, waits, cost), expiring after a while. */
    statsMinute: (minute: number) => `${t}:stats:${minute}`,
  };
}

/**
 * A SCAN `MATCH` pattern for every key under `prefix`, and no other prefix's: each key starts with
 * the prefix's hash tag `{prefix:`, and `PREFIX_PATTERN` admits no glob character.
 */
export function keysUnderPattern(prefix: string): string {
  return `{${prefix}:*`;
}
