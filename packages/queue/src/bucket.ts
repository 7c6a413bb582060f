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
 *   await bucket.settle(r.reservation, res.usage);                   // actual usage
 *   await bucket.sync('sonnet-4', limits, parseRateLimitHeaders(res.headers));
 * } else if (r.status === 'wait') backOff(r.waitMs);                 // exact, from Redis time
 * ```
 *
 * Limits come with each call, so a config change applies at once and there is no set-up step;
 * a dimension the config leaves out uses the limit learned from the providers' headers, and
 * binds only once one is known. Time is Redis `TIME`, so worker clocks do not matter.
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { DEFAULT_PREFIX, poolKeys, type PoolKeys } from './keys.js';
import { LANE_DEFAULTS, type Lane } from './lanes.js';
import type { Observed } from './rate-limit-headers.js';
import { runScript } from './scripts.js';

export const POOL_DIMENSIONS = ['rpm', 'itpm', 'otpm', 'tpm'] as const;
/** Requests/min, input tokens/min, output tokens/min (Anthropic), tokens/min (OpenAI). */
export type PoolDimension = (typeof POOL_DIMENSIONS)[number];
export type TenantDimension = 'tenant_rpm' | 'tenant_tpm';
export type Dimension = PoolDimension | TenantDimension;

/** Per-minute limits; the same shape as the config's `ModelLimits`. */
export interface PoolLimits {
  rpm?: number;
  itpm?: number;
  otpm?: number;
  tpm?: number;
}

export interface TenantLimits {
  /** Tokens/min, input + output, drawn in the same call as the pool. */
  tpm?: number;
  rpm?: number;
}

export interface Need {
  /** @default 1 */
  requests?: number;
  /** Estimated input tokens that count toward input tokens/min (cache reads excluded). */
  inputTokens: number;
  /** Output reservation: `max_tokens` (or a learned p95). */
  outputTokens: number;
}

export interface AcquireRequest {
  pool: string;
  limits: PoolLimits;
  need: Need;
  lane: Lane;
  /** Fraction of every dimension this lane must leave untouched. @default LANE_DEFAULTS[lane].reserve */
  reserve?: number;
  /** A model in cooldown makes the acquire wait until the cooldown ends. */
  model?: string;
  tenant?: { id: string; limits: TenantLimits };
}

/** A grant; hand it back to `settle`. Plain data, so it can travel with a job. */
export interface Reservation {
  id: string;
  pool: string;
  tenant?: string;
  lane: Lane;
  need: Required<Need>;
  /** Redis time of the grant, ms since the epoch (fractional). */
  grantedAtMs: number;
}

export type WaitReason = Dimension | 'cooldown';

export type AcquireResult =
  | { status: 'granted'; reservation: Reservation; atMs: number }
  /** Every dimension (and the model's cooldown) can serve after `waitMs`, if nobody else draws. */
  | { status: 'wait'; waitMs: number; reason: WaitReason; atMs: number }
  /** The need is larger than this lane may ever draw from `dimension`: waiting cannot help. */
  | { status: 'never_fits'; dimension: Dimension; maxDrawable: number; atMs: number };

/** Provider usage as reported, or Headroom's normalized `Usage`. */
export type SettleUsage =
  | { input_tokens: number; output_tokens: number; cache_creation_input_tokens?: number | null; cache_read_input_tokens?: number | null }
  | { prompt_tokens: number; completion_tokens: number }
  | { inputTokens: number; outputTokens: number; cacheCreationInputTokens?: number; cacheReadInputTokens?: number };

export type SettleResult =
  | {
      status: 'settled';
      /** Corrections charged at settle time (negative = refunded; 0 where the dimension did not bind). */
      delta: { inputTokens: number; outputTokens: number; tokens: number; tenantTokens: number };
      atMs: number;
    }
  /** The reservation expired (or was settled already): its charge stays. */
  | { status: 'expired'; atMs: number };

export interface SyncResult {
  lowered: PoolDimension[];
  atMs: number;
}

export type CooldownFor = { durationMs: number } | { untilMs: number };

export interface DimensionSnapshot {
  dimension: Dimension;
  capacity: number;
  source: 'config' | 'learned';
  /** Can be negative after an underestimate was settled. */
  level: number;
  ratePerSec: number;
  fullInMs: number;
}

export interface BucketSnapshot {
  pool: string;
  atMs: number;
  dimensions: DimensionSnapshot[];
  /** Dimensions with no limit in config and none learned yet: they do not bind. */
  unbound: PoolDimension[];
  learned: PoolLimits;
  cooldowns: { model: string; untilMs: number; remainingMs: number }[];
  tenants: Record<string, DimensionSnapshot[]>;
  counters: {
    grants: Partial<Record<Lane, number>>;
    waits: Partial<Record<WaitReason, number>>;
    neverFits: Partial<Record<Dimension, number>>;
    cooldownsSet: number;
    /** Settles that found their reservation expired: calls slower than the reservation TTL. */
    settleExpired: number;
    lowered: Partial<Record<PoolDimension, number>>;
  };
}

export interface BucketOptions {
  /** Key prefix, as in the config's `redis.prefix`. @default 'hr' */
  prefix?: string;
  /**
   * How long a grant can still be settled. Past it the reservation key is gone and the charge
   * stays, so it must outlast the slowest provider call. @default 900_000 (15 min)
   */
  reservationTtlMs?: number;
}

/** The Lua scripts' first reply element. */
export const BucketReply = { GRANTED: 1, WAIT: -1, NEVER_FITS: -2, SETTLED: 1, EXPIRED: 0, COOLING: 1, PAST: 0 } as const;

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

const limitArg = (n: number | undefined) => (n === undefined ? '' : positive(n, 'limit'));

function positive(n: number, what: string): number {
  if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${what} must be a positive number, got ${n}`);
  return n;
}

function amount(n: number, what: string): number {
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${what} must be a non-negative number, got ${n}`);
  return n;
}

type Reply = [number, number, ...(string | number)[]];
const atMsOf = (reply: Reply) => reply[1] / 1000;

export class Bucket {
  readonly prefix: string;
  readonly reservationTtlMs: number;
  readonly #redis: Redis | Cluster;
  // Pools are few (one per provider limit in config), so their keys are built once.
  readonly #keys = new Map<string, PoolKeys>();

  constructor(redis: Redis | Cluster, options: BucketOptions = {}) {
    this.#redis = redis;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.reservationTtlMs = positive(options.reservationTtlMs ?? 900_000, 'reservationTtlMs');
  }

  keys(pool: string): PoolKeys {
    let k = this.#keys.get(pool);
    if (!k) {
      k = poolKeys(this.prefix, pool);
      this.#keys.set(pool, k);
    }
    return k;
  }

  /** All or nothing across every dimension, the tenant and the model's cooldown; one round trip. */
  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    const need: Required<Need> = {
      requests: amount(req.need.requests ?? 1, 'need.requests'),
      inputTokens: amount(req.need.inputTokens, 'need.inputTokens'),
      outputTokens: amount(req.need.outputTokens, 'need.outputTokens'),
    };
    const reserve = req.reserve ?? LANE_DEFAULTS[req.lane].reserve;
    if (!(reserve >= 0 && reserve < 1)) throw new RangeError(`reserve must be in [0, 1), got ${reserve}`);
    const k = this.keys(req.pool);
    const id = nextId();
    const { limits } = req;
    const tenant = req.tenant;
    const args: (string | number)[] = [
      limitArg(limits.rpm), limitArg(limits.itpm), limitArg(limits.otpm), limitArg(limits.tpm),
      need.requests, need.inputTokens, need.outputTokens,
      reserve, req.lane, this.reservationTtlMs,
    ];
    if (tenant) args.push(req.model ?? '', limitArg(tenant.limits.tpm), limitArg(tenant.limits.rpm));
    else if (req.model) args.push(req.model);
    const reply = await runScript<Reply>(
      this.#redis,
      'acquire',
      [k.bucket, k.tenantBucket(tenant?.id ?? ''), k.cooldowns, k.stats, k.reservation(id)],
      args,
    );
    const atMs = atMsOf(reply);
    switch (reply[0]) {
      case BucketReply.GRANTED: {
        const reservation: Reservation = { id, pool: req.pool, lane: req.lane, need, grantedAtMs: atMs };
        if (tenant) reservation.tenant = tenant.id;
        return { status: 'granted', reservation, atMs };
      }
      case BucketReply.WAIT:
        return { status: 'wait', waitMs: Number(reply[2]), reason: reply[3] as WaitReason, atMs };
      case BucketReply.NEVER_FITS:
        return { status: 'never_fits', dimension: reply[2] as Dimension, maxDrawable: Number(reply[3]), atMs };
      default:
        throw new Error(`acquire: unexpected reply ${JSON.stringify(reply)}`);
    }
  }

  /** Replaces the reservation's estimates with reported usage; one round trip. */
  async settle(reservation: Reservation, usage: SettleUsage): Promise<SettleResult> {
    const counted = countedUsage(usage);
    const k = this.keys(reservation.pool);
    const reply = await runScript<Reply>(
      this.#redis,
      'settle',
      [k.reservation(reservation.id), k.bucket, k.tenantBucket(reservation.tenant ?? ''), k.stats],
      [amount(counted.inputTokens, 'input tokens'), amount(counted.outputTokens, 'output tokens')],
    );
    const atMs = atMsOf(reply);
    if (reply[0] === BucketReply.EXPIRED) return { status: 'expired', atMs };
    const [, , inputTokens, outputTokens, tokens, tenantTokens] = reply.map(Number);
    return {
      status: 'settled',
      delta: { inputTokens: inputTokens ?? 0, outputTokens: outputTokens ?? 0, tokens: tokens ?? 0, tenantTokens: tenantTokens ?? 0 },
      atMs,
    };
  }

  /**
   * Lowers the pool's levels to what the provider reports (never raises them) and learns the
   * limits it announces. Call it after `settle`, so the bucket already holds this call's usage.
   */
  async sync(pool: string, limits: PoolLimits, observed: Observed): Promise<SyncResult> {
    const k = this.keys(pool);
    const seen = POOL_DIMENSIONS.map((d) => observed[d]);
    const opt = (n: number | undefined) => (n === undefined ? '' : n);
    const reply = await runScript<Reply>(this.#redis, 'sync', [k.bucket, k.stats], [
      ...POOL_DIMENSIONS.map((d) => limitArg(limits[d])),
      ...seen.map((o) => (o?.limit ? o.limit : '')),
      ...seen.map((o) => opt(o?.remaining)),
      ...seen.map((o) => opt(o?.resetInMs)),
      ...seen.map((o) => o?.remainingSlack ?? 0),
    ]);
    return { lowered: reply.slice(2) as PoolDimension[], atMs: atMsOf(reply) };
  }

  /**
   * Puts `model` in cooldown (after a 429: its `retry-after`). `untilMs` is read against Redis
   * time. Returns the end now in force, or null when that end has already passed.
   */
  async cooldown(pool: string, model: string, span: CooldownFor): Promise<{ untilMs: number | null }> {
    const k = this.keys(pool);
    const [mode, ms] = 'durationMs' in span ? ['for', amount(span.durationMs, 'durationMs')] : ['until', amount(span.untilMs, 'untilMs')];
    const reply = await runScript<Reply>(this.#redis, 'cooldown', [k.cooldowns, k.stats], [model, mode, ms]);
    return { untilMs: reply[0] === BucketReply.COOLING ? Number(reply[2]) : null };
  }

  /** A consistent read (one MULTI) for the dashboard and `headroom status`. */
  async snapshot(pool: string, limits: PoolLimits, options: { tenants?: Record<string, TenantLimits> } = {}): Promise<BucketSnapshot> {
    const k = this.keys(pool);
    const tenants = Object.entries(options.tenants ?? {});
    const multi = this.#redis
      .multi()
      .time()
      .hgetall(k.bucket)
      .zrange(k.cooldowns, '0', '-1', 'WITHSCORES')
      .hgetall(k.stats);
    for (const [id] of tenants) multi.hgetall(k.tenantBucket(id));
    const results = (await multi.exec()) ?? [];
    const value = (i: number): unknown => {
      const [err, v] = results[i] ?? [new Error('missing reply'), null];
      if (err) throw err;
      return v;
    };
    const [sec, usec] = (value(0) as [string, string]).map(Number) as [number, number];
    const now = (sec * 1_000_000 + usec) / 1000;
    const bucket = value(1) as Record<string, string>;
    const learned: PoolLimits = {};
    for (const d of POOL_DIMENSIONS) if (bucket[`limit:${d}`] !== undefined) learned[d] = Number(bucket[`limit:${d}`]);

    const dimensions: DimensionSnapshot[] = [];
    const unbound: PoolDimension[] = [];
    for (const d of POOL_DIMENSIONS) {
      const capacity = limits[d] ?? learned[d];
      if (capacity === undefined) unbound.push(d);
      else dimensions.push(dimensionAt(d, capacity, limits[d] === undefined ? 'learned' : 'config', bucket, d, now));
    }

    const tenantDims: Record<string, DimensionSnapshot[]> = {};
    tenants.forEach(([id, tl], i) => {
      const raw = value(4 + i) as Record<string, string>;
      const dims: DimensionSnapshot[] = [];
      if (tl.rpm !== undefined) dims.push(dimensionAt('tenant_rpm', tl.rpm, 'config', raw, 'rpm', now));
      if (tl.tpm !== undefined) dims.push(dimensionAt('tenant_tpm', tl.tpm, 'config', raw, 'tpm', now));
      tenantDims[id] = dims;
    });

    const zs = value(2) as string[];
    const cooldowns: BucketSnapshot['cooldowns'] = [];
    for (let i = 0; i + 1 < zs.length; i += 2) {
      const untilMs = Number(zs[i + 1]);
      if (untilMs > now) cooldowns.push({ model: zs[i] as string, untilMs, remainingMs: untilMs - now });
    }
    return { pool, atMs: now, dimensions, unbound, learned, cooldowns, tenants: tenantDims, counters: counters(value(3) as Record<string, string>) };
  }
}

function dimensionAt(
  dimension: Dimension,
  capacity: number,
  source: 'config' | 'learned',
  hash: Record<string, string>,
  field: string,
  now: number,
): DimensionSnapshot {
  const ts = hash.ts;
  const stored = hash[field];
  const ratePerMs = capacity / 60_000;
  const elapsed = ts === undefined ? 0 : Math.max(0, now - Number(ts));
  const used = stored === undefined ? 0 : Math.max(0, Number(stored) - elapsed * ratePerMs);
  return { dimension, capacity, source, level: capacity - used, ratePerSec: capacity / 60, fullInMs: used / ratePerMs };
}

function counters(stats: Record<string, string>): BucketSnapshot['counters'] {
  const c: BucketSnapshot['counters'] = { grants: {}, waits: {}, neverFits: {}, cooldownsSet: 0, settleExpired: 0, lowered: {} };
  const groups = { grant: c.grants, wait: c.waits, never: c.neverFits, lowered: c.lowered } as Record<string, Record<string, number>>;
  for (const [field, v] of Object.entries(stats)) {
    const n = Number(v);
    const [group, name] = field.split(':', 2);
    if (field === 'cooldowns') c.cooldownsSet = n;
    else if (field === 'settle:expired') c.settleExpired = n;
    else if (group && name && groups[group]) (groups[group] as Record<string, number>)[name] = n;
  }
  return c;
}
