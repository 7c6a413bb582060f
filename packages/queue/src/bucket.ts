/**
 * The fleet's shared quota bucket: one per (provider, model pool), in Redis, so any number of
 * worker processes together never draw more than the provider's limit in any dimension.
 *
 * ```ts
 * const bucket = new Bucket(redis);
 * const limits = { rpm: 50, itpm: 30_000, otpm: 8_000 };            // from config, every call
 * const r = await bucket.acquire({ pool: 'sonnet-4', limits, lane: 'high',
 *   need: { inputTokens: 1200, outputTokens: 1024 }, model: 'claude-sonnet-4-5' });
 * if (r.status === 'granted') {
 *   const res = await callProvider();
 *   bucket.settle(r.reservation, res.usage).catch(log);              // actual usage
 *   bucket.sync('sonnet-4', limits, parseRateLimitHeaders(res.headers)).catch(log);
 * } else if (r.status === 'wait') backOff(r.waitMs);                 // exact, from Redis time
 * await bucket.close();                                             // sends what is left
 * ```
 *
 * One provider call costs the bucket one round trip and one script: `settle` and `sync` do not
 * go to Redis on their own but ride on this bucket's next `acquire` to the same pool, applied
 * before its check, so a worker's own refunds and charges are never behind its own grants. When
 * no acquire comes, they are sent after `flushDelayMs` (default 20 ms), on `flush()`, on
 * `close()`, or at once with `{ immediate: true }`; their promises resolve when Redis has applied
 * them. Until then the pool holds the reservation's full charge, which errs on the safe side, and
 * so does a crash: a reservation never settled keeps its charge. Redis holds no reservation: the
 * grant's reply says what a settle needs, the `Reservation` carries it, and the settle sends it
 * back with the usage, so a grant creates no key of its own and a settle reads none. A grant whose call is
 * never sent goes back whole with `release` (its request too), the same way; one the provider may
 * have counted in full keeps its charge with `keep`. Each grant that reserves output is listed
 * among the calls in flight until one of the three (lua/includes/in-flight.lua), so a wait can
 * say how much of it their refunds could cover (`sureWaitMs`).
 *
 * Each dimension holds `limits.burst` seconds of its quota (default 60: a minute's worth) and
 * refills at limit/60 per second, so over any window of W seconds a pool grants at most
 * `limit * (burst + W) / 60` in each dimension, whatever the number of workers.
 *
 * Limits come with each call, so a config change applies at once and there is no set-up step;
 * a dimension the config leaves out uses the limit learned from the providers' headers, and
 * binds only once one is known; one the config sets above what the provider announces is paced
 * by the provider's. Time is Redis `TIME`, so worker clocks do not matter.
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { readSnapshot } from './bucket-snapshot.js';
import {
  POOL_DIMENSIONS,
  type AcquireRequest,
  type AcquireResult,
  type BucketOptions,
  type BucketSnapshot,
  type CarryOptions,
  type CooldownFor,
  type Dimension,
  type Need,
  type PoolDimension,
  type PoolLimits,
  type Reservation,
  type SettleResult,
  type SettleUsage,
  type SyncResult,
  type TenantLimits,
  type ThrottleParams,
  type ThrottleSnapshot,
  type ThrottleState,
  type WaitReason,
} from './bucket-types.js';
import { ClosedError } from './errors.js';
import { CarriedWork, type CarriedBatch } from './internal/carried-work.js';
import { failOnConnectionLoss } from './internal/lost-calls.js';
import { DEFAULT_PREFIX, poolKeys, type PoolKeys } from './keys.js';
import { LANE_DEFAULTS, LANES, type Lane } from './lanes.js';
import type { Observed } from './rate-limit-headers.js';
import { runScript } from './scripts.js';

export { POOL_DIMENSIONS, TENANT_DIMENSIONS, isTenantDimension } from './bucket-types.js';
export type * from './bucket-types.js';

/** `acquire.lua`'s first reply element (see the script's header). */
export const AcquireReply = { GRANTED: 1, WAIT: -1, NEVER_FITS: -2 } as const;
/** `cooldown-2.lua`'s first reply element. */
export const CooldownReply = { PAST: 0, COOLING: 1 } as const;
/** The throttle state codes `acquire.lua` and `throttle-view-2.lua` reply with, by code. */
export const THROTTLE_STATES: readonly ThrottleState[] = ['closed', 'throttled', 'open'];

/**
 * What counts toward the limits. Anthropic: `input_tokens` + `cache_creation_input_tokens`
 * (cache reads do not count toward input tokens/min). OpenAI: `prompt_tokens` + `completion_tokens`
 * (its Responses API's `input_tokens` has no cache-creation field, so the Anthropic rule fits it too).
 */
export function countedUsage(usage: SettleUsage): { inputTokens: number; outputTokens: number } {
  if ('prompt_tokens' in usage) return { inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens };
  if ('input_tokens' in usage) {
    return { inputTokens: usage.input_tokens + (usage.cache_creation_input_tokens ?? 0), outputTokens: usage.output_tokens };
  }
  return { inputTokens: usage.inputTokens + (usage.cacheCreationInputTokens ?? 0), outputTokens: usage.outputTokens };
}

// Ids only need to be unique among live reservations of one pool: a random per-process part plus
// a counter is unique across the fleet and cheaper than a UUID per call.
const PROCESS_ID = randomBytes(6).toString('base64url');
let sequence = 0;
const nextId = () => `${PROCESS_ID}${(sequence++).toString(36)}`;

/** A grant's life in the in-flight count when the caller names none: the providers' default call timeout. */
export const DEFAULT_CALL_LIFE_MS = 600_000;

/**
 * A grant's entry among the calls in flight (lua/includes/in-flight.lua): what its settle may give
 * back, and to which tenant's bucket; '' when it reserved no output. Built the same at the grant
 * and at its settle, so the settle removes exactly the grant's entry.
 */
function inFlightMember(id: string, outputTokens: number, limitedTenant: string | undefined): string {
  return outputTokens > 0 ? `${id}|${outputTokens}|${limitedTenant ?? ''}` : '';
}

const limitedTenantOf = (r: Reservation): string | undefined => (r.chargedAgainst.tenantTpm > 0 || r.chargedAgainst.tenantRpm > 0 ? (r.tenant ?? '') : undefined);

function laneIndex(lane: Lane): number {
  const i = LANES.indexOf(lane);
  if (i < 0) throw new RangeError(`unknown lane ${lane}`);
  return i;
}

const limitArg = (n: number | undefined) => (n === undefined ? '' : positive(n, 'limit'));
const burstArg = (n: number | undefined) => (n === undefined ? '' : positive(n, 'burst'));
const optional = (n: number | undefined) => (n === undefined ? '' : n);

function positive(n: number, what: string): number {
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${what} must be a positive number, got ${n}`);
  return n;
}

function atLeast(n: number, min: number, what: string): number {
  if (!Number.isFinite(n) || n < min) throw new RangeError(`${what} must be a number of at least ${min}, got ${n}`);
  return n;
}

function fractionOf(n: number, what: string): number {
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new RangeError(`${what} must be a number from 0 to 1, got ${n}`);
  return n;
}

function amount(n: number, what: string): number {
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${what} must be a non-negative number, got ${n}`);
  return n;
}

type Reply = [number, number, ...(string | number)[]];
type SettleDelta = Extract<SettleResult, { status: 'settled' }>['delta'];
const atMsOf = (reply: Reply) => reply[1] / 1000;
/** Reply elements before the dimensions the headers lowered. */
const REPLY_HEAD = 8;
const throttleOf = (reply: Reply): ThrottleState | undefined => THROTTLE_STATES[Number(reply[5])];

/** What an acquire adds to the script call (see lua/acquire.lua). */
interface AcquirePart {
  limits: PoolLimits;
  /** The tenant bucket, when the acquire checks tenant limits: the script's last key. */
  tenantKey: string | undefined;
  /** requests, input, output, reserve, lane index, in-flight member, call life, then model, retry flag, retry reserve, tenant tokens/min, tenant requests/min, fair reserve (each omitted when it and those after it are unused). */
  args: (string | number)[];
}

export class Bucket {
  readonly prefix: string;
  readonly flushDelayMs: number;
  readonly throttle: ThrottleParams | undefined;
  readonly #redis: Redis | Cluster;
  /** The throttle params as the scripts take them (six arguments; '' = off). */
  readonly #throttleArgs: (string | number)[];
  // Pools are few (one per provider limit in config), so their keys are built once.
  readonly #keys = new Map<string, PoolKeys>();
  readonly #carried = new CarriedWork();
  /**
   * The first settle of each reservation handed in: a second one gets its outcome as
   * `duplicate` and corrects nothing. Weak, so a settled reservation is forgotten with its object.
   */
  readonly #settled = new WeakMap<Reservation, Promise<SettleResult>>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  /**
   * `redis` should not resend a command after a reconnect (`createRedis(url, 'bucket')` or
   * `duplicateFor(conn, 'bucket')`): Redis keeps no record of reservations, so a settle that ran
   * before the connection dropped and ran again after it would refund twice. On such a
   * connection a call lost in a disconnect rejects instead: its carried settles report failure and
   * their full charge stays, which errs on the safe side. A bucket used only for `snapshot` and
   * `cooldown` can share any connection.
   */
  constructor(redis: Redis | Cluster, options: BucketOptions = {}) {
    this.#redis = redis;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.flushDelayMs = amount(options.flushDelayMs ?? 20, 'flushDelayMs');
    this.throttle = options.throttle;
    const t = options.throttle;
    this.#throttleArgs = t
      ? [
          atLeast(t.k, 1, 'throttle.k'), positive(t.windowMs, 'throttle.windowMs'), positive(t.probeIntervalMs, 'throttle.probeIntervalMs'),
          fractionOf(t.budget.ratio, 'throttle.budget.ratio'), positive(t.budget.windowMs, 'throttle.budget.windowMs'), amount(t.budget.minPerSecond, 'throttle.budget.minPerSecond'),
        ]
      : ['', '', '', '', '', ''];
  }

  keys(pool: string): PoolKeys {
    let k = this.#keys.get(pool);
    if (!k) {
      k = poolKeys(this.prefix, pool);
      this.#keys.set(pool, k);
    }
    return k;
  }

  /**
   * All or nothing across every dimension, the tenant and the model's cooldown; one round trip,
   * which also carries this bucket's waiting settles and headers for the pool.
   */
  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    this.#open();
    const need: Required<Need> = {
      requests: amount(req.need.requests ?? 1, 'need.requests'),
      inputTokens: amount(req.need.inputTokens, 'need.inputTokens'),
      outputTokens: amount(req.need.outputTokens, 'need.outputTokens'),
    };
    const reserve = req.reserve ?? LANE_DEFAULTS[req.lane].reserve;
    if (!(reserve >= 0 && reserve < 1)) throw new RangeError(`reserve must be in [0, 1), got ${reserve}`);
    const tenant = req.tenant;
    const tenantLimited = tenant !== undefined && (tenant.limits.tpm !== undefined || tenant.limits.rpm !== undefined);
    const retryReserve = req.retryReserve ?? LANE_DEFAULTS[req.lane].retryReserve;
    if (!(retryReserve >= 0 && retryReserve < 1)) throw new RangeError(`retryReserve must be in [0, 1), got ${retryReserve}`);
    const fairReserve = req.fairReserve ?? 0;
    if (!(fairReserve >= 0 && reserve + fairReserve < 1)) throw new RangeError(`fairReserve must be >= 0 and below 1 - reserve, got ${fairReserve}`);
    const id = nextId();
    const callLifeMs = positive(req.callLifeMs ?? DEFAULT_CALL_LIFE_MS, 'callLifeMs');
    const member = inFlightMember(id, need.outputTokens, tenantLimited ? tenant.id : undefined);
    const args: (string | number)[] = [need.requests, need.inputTokens, need.outputTokens, reserve, laneIndex(req.lane), member, callLifeMs];
    // '2': a retry the budget counts but does not hold (an exempt lane's).
    const retry = !req.retry ? 0 : (req.retryBudgetExempt ?? LANE_DEFAULTS[req.lane].retryBudgetExempt) ? 2 : 1;
    if (tenantLimited || req.model || fairReserve > 0) args.push(req.model ?? '', retry, retryReserve);
    if (tenantLimited) args.push(limitArg(tenant.limits.tpm), limitArg(tenant.limits.rpm));
    else if (fairReserve > 0) args.push('', '');
    if (fairReserve > 0) args.push(fairReserve);
    const reply = await this.#run(req.pool, this.#carried.take(req.pool), {
      limits: req.limits,
      tenantKey: tenantLimited ? this.keys(req.pool).tenantBucket(tenant.id) : undefined,
      args,
    });
    const atMs = atMsOf(reply);
    switch (reply[0]) {
      case AcquireReply.GRANTED: {
        const chargedAgainst = {
          rpm: capacityOf(reply[7], req.limits.rpm),
          itpm: capacityOf(reply[2], req.limits.itpm),
          otpm: capacityOf(reply[3], req.limits.otpm),
          tpm: capacityOf(reply[4], req.limits.tpm),
          tenantRpm: tenantLimited ? (tenant.limits.rpm ?? 0) : 0,
          tenantTpm: tenantLimited ? (tenant.limits.tpm ?? 0) : 0,
        };
        const reservation: Reservation = { id, pool: req.pool, lane: req.lane, need, chargedAgainst, grantedAtMs: atMs };
        if (tenant) reservation.tenant = tenant.id;
        if (Number(reply[8]) === 1) reservation.inFlight = true;
        const throttle = throttleOf(reply);
        return throttle ? { status: 'granted', reservation, atMs, throttle, unhealthyRun: Number(reply[6]) } : { status: 'granted', reservation, atMs };
      }
      case AcquireReply.WAIT: {
        const throttle = throttleOf(reply);
        const wait = { status: 'wait', waitMs: Number(reply[2]), reason: reply[3] as WaitReason, sureWaitMs: Number(reply[4]), atMs } as const;
        return throttle ? { ...wait, throttle } : wait;
      }
      case AcquireReply.NEVER_FITS:
        return { status: 'never_fits', dimension: reply[2] as Dimension, maxDrawable: Number(reply[3]), limit: Number(reply[4]), atMs };
      default:
        throw new Error(`acquire: unexpected reply ${JSON.stringify(reply)}`);
    }
  }

  /**
   * Replaces the reservation's estimates with reported usage. Rides on the next acquire to the
   * reservation's pool (see the module comment); resolves once Redis has applied it. The same
   * reservation handed in again corrects nothing more (`duplicate`, once the first is applied).
   */
  settle(reservation: Reservation, usage: SettleUsage, options: CarryOptions = {}): Promise<SettleResult> {
    return this.#settle(reservation, () => {
      const counted = countedUsage(usage);
      return { inputTokens: amount(counted.inputTokens, 'input tokens'), outputTokens: amount(counted.outputTokens, 'output tokens'), requestsBack: 0 };
    }, options);
  }

  /**
   * Gives a grant back whole, its request included: for a grant whose call was never sent (the
   * job was cancelled, or yields its turn to a job ahead of it). A settle of zero usage keeps the
   * request, since a call the provider refused still counted against its requests per minute; a
   * grant never sent did not, and keeping it would cost a pool whose requests bind one call.
   * Once per reservation, like `settle` (the two share the dedupe).
   */
  release(reservation: Reservation, options: CarryOptions = {}): Promise<SettleResult> {
    return this.#settle(reservation, () => ({ inputTokens: 0, outputTokens: 0, requestsBack: reservation.need.requests }), options);
  }

  /**
   * Keeps a grant's whole charge (a call the provider may have counted in full: a 5xx, a cut
   * connection) and ends its place among the calls in flight: nothing of it is coming back, so no
   * tokens/min wait may count on it. Once per reservation, like `settle`.
   */
  keep(reservation: Reservation, options: CarryOptions = {}): Promise<SettleResult> {
    return this.#settle(reservation, () => ({ inputTokens: reservation.need.inputTokens, outputTokens: reservation.need.outputTokens, requestsBack: 0 }), options);
  }

  #settle(reservation: Reservation, what: () => { inputTokens: number; outputTokens: number; requestsBack: number }, options: CarryOptions): Promise<SettleResult> {
    // A bad argument or a closed bucket rejects, as a Redis error would: callers catch one way.
    let first = false;
    const done = new Promise<SettleResult>((resolve, reject) => {
      const { inputTokens, outputTokens, requestsBack } = what();
      this.#open();
      const earlier = this.#settled.get(reservation);
      if (earlier) {
        earlier.then((r) => resolve({ status: 'duplicate', atMs: r.atMs }), reject);
        return;
      }
      first = true;
      this.#carried.addSettle({ reservation, inputTokens, outputTokens, requestsBack, resolve, reject });
    });
    if (first) {
      this.#settled.set(reservation, done);
      this.#sendLater(reservation.pool, options);
    }
    return done;
  }

  /**
   * Lowers the pool's levels to what the provider reports (never raises them) and learns the
   * limits it announces. Applied after the settles handed in before it, so the bucket already
   * holds those calls' usage. Rides on the next acquire like `settle`; the headers are then read
   * against that acquire's limits. Headers say what the provider held when it sent them: hand them
   * in as they come, before the settles of whatever it had not yet given back then. A stream's
   * head, which still counts that call's whole output bound, goes `{ immediate: true }` when it
   * arrives, so it cannot share a batch with (and be applied after) that call's settle.
   */
  sync(pool: string, limits: PoolLimits, observed: Observed, options: CarryOptions = {}): Promise<SyncResult> {
    const done = new Promise<SyncResult>((resolve, reject) => {
      for (const d of POOL_DIMENSIONS) limitArg(limits[d]);
      burstArg(limits.burst);
      this.#open();
      this.#carried.addSync(pool, limits, observed, { resolve, reject });
    });
    this.#sendLater(pool, options);
    return done;
  }

  /**
   * Reports how a call to `model` ended, for its fleet-wide adaptive throttle: `ok` false for a
   * failure that says the model is unhealthy (5xx, 529, no answer), true for any answer that
   * says it works (a 4xx about the request or the quota included). `retry`: the call was granted
   * as a retry (`AcquireRequest.retry`); served, it gives its place in the retry budget back.
   * Rides on the next acquire to the pool like `settle`; with the throttle off, it is dropped.
   */
  report(pool: string, model: string, ok: boolean, options: CarryOptions & { retry?: boolean } = {}): void {
    this.#open();
    if (!this.throttle) return;
    this.#carried.addOutcome(pool, model, ok, options.retry === true);
    this.#sendLater(pool, options);
  }

  /**
   * A retry of `model` granted (`AcquireRequest.retry`) whose call says nothing of the model: never
   * sent (its grant handed back), or stopped by its caller (a stream the client cut). Its place in
   * the retry budget goes back, and no outcome is counted. Rides on the next acquire, like `report`.
   */
  retryWithoutOutcome(pool: string, model: string, options: CarryOptions = {}): void {
    this.#open();
    if (!this.throttle) return;
    this.#carried.addRetryBack(pool, model);
    this.#sendLater(pool, options);
  }

  /** Sends every waiting settle, sync and report now; resolves when Redis has applied them all. */
  async flush(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await Promise.all(this.#carried.pools().map((pool) => this.#flushPool(pool)));
  }

  /** Sends what is waiting and refuses further work (`ClosedError`). The connection stays open. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
  }

  /**
   * Puts `model` in cooldown (after a 429: its `retry-after`). `untilMs` is read against Redis
   * time. Returns the end now in force, or null when that end has already passed.
   */
  async cooldown(pool: string, model: string, span: CooldownFor): Promise<{ untilMs: number | null }> {
    const k = this.keys(pool);
    const [mode, ms] = 'durationMs' in span ? ['for', amount(span.durationMs, 'durationMs')] : ['until', amount(span.untilMs, 'untilMs')];
    // Awaited by a job's run after a 429: a call its connection dropped would leave the job hung.
    const reply = await failOnConnectionLoss(this.#redis, runScript<Reply>(this.#redis, 'cooldown', [k.cooldowns, k.stats], [model, mode, ms]));
    return { untilMs: reply[0] === CooldownReply.COOLING ? Number(reply[2]) : null };
  }

  /**
   * A consistent read (one MULTI) for the dashboard and `headroom status`. Settles and headers
   * still waiting in this bucket are not in it; `flush()` first where that matters.
   */
  async snapshot(pool: string, limits: PoolLimits, options: { tenants?: Record<string, TenantLimits>; models?: readonly string[] } = {}): Promise<BucketSnapshot> {
    // Awaited by a job waiting for its model and by the pressure leader's tick: neither may hang on a dropped call.
    const [snap, throttles] = await Promise.all([failOnConnectionLoss(this.#redis, readSnapshot(this.#redis, this.keys(pool), pool, limits, options)), this.throttles(pool, limits, options.models ?? [])]);
    return { ...snap, throttles };
  }

  /** The models' adaptive throttles and retry budgets, fleet-wide, now (empty with the throttle off). */
  async throttles(pool: string, limits: PoolLimits, models: readonly string[]): Promise<ThrottleSnapshot[]> {
    if (!this.throttle || models.length === 0) return [];
    const k = this.keys(pool);
    const reply = await failOnConnectionLoss(this.#redis, runScript<string[]>(this.#redis, 'throttle-view', [k.throttle, k.bucket], [limitArg(limits.rpm), ...this.#throttleArgs, ...models]));
    const out: ThrottleSnapshot[] = [];
    for (let i = 0; i + 9 < reply.length; i += 10) {
      const n = (j: number) => Number(reply[i + j]);
      out.push({
        model: String(reply[i]),
        state: THROTTLE_STATES[n(1)] ?? 'closed',
        admitRatio: n(2),
        successRatio: n(3),
        allowedRpm: n(4),
        callsPerSec: n(5),
        firstsPerSec: n(6),
        retriesPerSec: n(7),
        retryBudget: n(8),
        retryBudgetLeft: n(9),
      });
    }
    return out;
  }

  #open(): void {
    if (this.#closed) throw new ClosedError('bucket');
  }

  #sendLater(pool: string, options: CarryOptions): void {
    if (options.immediate || this.flushDelayMs === 0) {
      void this.#flushPool(pool);
      return;
    }
    // Kept referenced: a process that settles and then exits still gets its refunds applied.
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.flushDelayMs);
  }

  /** Errors reach the waiters' promises, never this one's. */
  async #flushPool(pool: string): Promise<void> {
    const sends: Promise<unknown>[] = [];
    for (let batch = this.#carried.take(pool); batch; batch = this.#carried.take(pool)) {
      sends.push(this.#run(pool, batch, undefined).catch(() => undefined));
    }
    await Promise.all(sends);
  }

  /** One script call: the carried work, then the acquire if there is one. */
  async #run(pool: string, batch: CarriedBatch | undefined, acquire: AcquirePart | undefined): Promise<Reply> {
    const k = this.keys(pool);
    const settles = batch?.settles ?? [];
    const sync = batch?.sync;
    const outcomes = batch?.outcomes;
    const limits = acquire?.limits ?? sync?.limits ?? {};
    const keys = [k.bucket, k.cooldowns, k.stats, k.throttle, k.inFlight];
    const args: (string | number)[] = [
      limitArg(limits.rpm), limitArg(limits.itpm), limitArg(limits.otpm), limitArg(limits.tpm),
      burstArg(limits.burst), settles.length, sync ? 1 : 0, outcomes?.size ?? 0, ...this.#throttleArgs,
    ];
    const results = settles.map((s) => {
      const { need, chargedAgainst: against } = s.reservation;
      const dIn = s.inputTokens - need.inputTokens;
      const dOut = s.outputTokens - need.outputTokens;
      // A grant never counted in flight has no entry to remove: its settle spends no command on it.
      const member = s.reservation.inFlight ? inFlightMember(s.reservation.id, need.outputTokens, limitedTenantOf(s.reservation)) : '';
      args.push(dIn, dOut, against.itpm, against.otpm, against.tpm, against.tenantTpm, 0 - s.requestsBack, against.rpm, against.tenantRpm, laneIndex(s.reservation.lane), member);
      const delta = corrections(0 - s.requestsBack, dIn, dOut, against);
      if (delta.tenantTokens !== 0 || delta.tenantRequests !== 0) keys.push(k.tenantBucket(s.reservation.tenant ?? ''));
      return delta;
    });
    if (acquire?.tenantKey) keys.push(acquire.tenantKey);
    if (sync) {
      const seen = POOL_DIMENSIONS.map((d) => sync.observed[d]);
      args.push(
        ...seen.map((o) => (o?.limit ? o.limit : '')),
        ...seen.map((o) => optional(o?.remaining)),
        ...seen.map((o) => optional(o?.resetInMs)),
        ...seen.map((o) => o?.remainingSlack ?? 0),
      );
    }
    for (const [model, o] of outcomes ?? []) args.push(model, o.calls, o.oks, o.retriesBack);
    if (acquire) args.push(...acquire.args);

    let reply: Reply;
    try {
      reply = await failOnConnectionLoss(this.#redis, runScript<Reply>(this.#redis, 'acquire', keys, args));
    } catch (err) {
      // Whether Redis applied them is unknown; the charges then stay, which errs on the safe side.
      for (const s of settles) s.reject(err);
      for (const w of sync?.waiters ?? []) w.reject(err);
      throw err;
    }
    const atMs = atMsOf(reply);
    for (const [i, s] of settles.entries()) s.resolve({ status: 'settled', delta: results[i]!, atMs });
    if (sync) {
      const result: SyncResult = { lowered: reply.slice(REPLY_HEAD) as PoolDimension[], atMs };
      for (const w of sync.waiters) w.resolve(result);
    }
    return reply;
  }
}

/** A grant's reply for one dimension (see lua/acquire.lua): 0, 1 = the configured limit, or the learned one (lower or alone). */
function capacityOf(replied: string | number | undefined, configured: number | undefined): number {
  if (typeof replied === 'string') return Number(replied);
  return replied === 1 ? (configured ?? 0) : 0;
}

/**
 * What a settle corrects: reported usage minus what was charged, in each dimension that bound at
 * the grant (one that did not was charged nothing, so it is corrected by nothing).
 */
function corrections(dReq: number, dIn: number, dOut: number, against: Reservation['chargedAgainst']): SettleDelta {
  return {
    requests: against.rpm > 0 ? dReq : 0,
    inputTokens: against.itpm > 0 ? dIn : 0,
    outputTokens: against.otpm > 0 ? dOut : 0,
    tokens: against.tpm > 0 ? dIn + dOut : 0,
    tenantRequests: against.tenantRpm > 0 ? dReq : 0,
    tenantTokens: against.tenantTpm > 0 ? dIn + dOut : 0,
  };
}
