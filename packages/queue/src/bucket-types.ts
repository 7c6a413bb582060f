/**
 * The bucket's public shapes: what goes into `Bucket` and what comes back. Plain data, so a
 * reservation can travel with a job.
 */
import type { Lane } from './lanes.js';

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
  /**
   * Seconds of quota each dimension may hold: the bucket's capacity is `limit * burst / 60`, and
   * over any window of W seconds the pool grants at most `limit * (burst + W) / 60`.
   * @default 60
   */
  burst?: number;
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
  /**
   * A model in cooldown makes the acquire wait until the cooldown ends; with the bucket's
   * `throttle` options, the model's adaptive throttle (and, for a retry, its retry budget) must
   * admit the call too.
   */
  model?: string;
  /** The job has called this model before: the call draws on the model's retry budget. @default false */
  retry?: boolean;
  /**
   * Fraction of the retry budget this lane must leave for the lanes above.
   * @default RETRY_BUDGET_RESERVE[lane]
   */
  retryReserve?: number;
  /**
   * A retry not held by the retry budget while the model's throttle is closed (still counted in
   * it): the lane is exempt.
   * @default LANE_DEFAULTS[lane].retryBudgetExempt
   */
  retryBudgetExempt?: boolean;
  tenant?: { id: string; limits: TenantLimits };
  /**
   * The longest the granted call may run before it is settled (its timeout). Until its settle or
   * release, or for this long after the grant, the output it reserved counts as in flight: what
   * may still come back to a tokens/min wait (`sureWaitMs`). A grant whose worker died stops
   * counting then. @default DEFAULT_CALL_LIFE_MS (600,000: the providers' default timeout)
   */
  callLifeMs?: number;
  /**
   * Further fraction of every pool dimension to leave, for a tenant with nothing queued: set for a
   * job whose tenant had work queued ahead of it in a fair lane. A wait it alone causes has reason
   * `fair_share`. @default 0
   */
  fairReserve?: number;
}

/**
 * A grant; hand it back to `settle`. Plain data, so it can travel with a job. Redis keeps no copy:
 * what a settle needs to correct the charge is here.
 */
export interface Reservation {
  id: string;
  pool: string;
  tenant?: string;
  lane: Lane;
  /** What was charged: a settle corrects it to the reported usage. */
  need: Required<Need>;
  /**
   * The capacity each dimension was charged against (as configured, or learned from headers when
   * lower or alone); 0 = the dimension did not bind, so a settle corrects nothing there.
   */
  chargedAgainst: { rpm: number; itpm: number; otpm: number; tpm: number; tenantRpm: number; tenantTpm: number };
  /** Redis time of the grant, ms since the epoch (fractional). */
  grantedAtMs: number;
  /**
   * Counted among the pool's calls in flight (its output a refund a tokens/min wait may count on:
   * includes/in-flight.lua); absent for a grant made while no such wait was near.
   */
  inFlight?: true;
}

/**
 * Why an acquire waits: a dimension, the model's cooldown (a 429's retry-after), its adaptive
 * throttle (too few of its recent calls succeeded), or its retry budget (too many retries of it
 * lately, for a retry).
 */
export type WaitReason = Dimension | 'cooldown' | 'throttle' | 'retry_budget' | 'fair_share';

/** Closed: calls go at the bucket's pace. Throttled: fewer, by the success ratio. Open: probes only (a dead model). */
export type ThrottleState = 'closed' | 'throttled' | 'open';

/**
 * The fleet-wide adaptive throttle and retry budget per model (see lua/includes/model-throttle.lua),
 * as the config's `throttle` and `retry.budget` give them, with durations in ms.
 */
export interface ThrottleParams {
  /** Admit up to `k` times the calls the model still serves (Google SRE's K). */
  k: number;
  /** Time constant of the success ratio's sliding window. */
  windowMs: number;
  /** A dead model is called once per this long, fleet-wide. */
  probeIntervalMs: number;
  budget: {
    /** Retries may be at most this fraction of first calls over the window. */
    ratio: number;
    windowMs: number;
    /** Retries always allowed per second, so a quiet model can still retry. */
    minPerSecond: number;
  };
}

/** One model's throttle and retry budget, fleet-wide, now. */
export interface ThrottleSnapshot {
  model: string;
  state: ThrottleState;
  /** Fraction of the pool's requests/min the throttle admits (1 = not throttled). */
  admitRatio: number;
  /** Share of the model's recent calls the provider served. */
  successRatio: number;
  /** Calls/min the throttle allows now (the probe rate when open). */
  allowedRpm: number;
  /** Calls per second with a known outcome, first calls per second and retries per second, over the windows. */
  callsPerSec: number;
  firstsPerSec: number;
  retriesPerSec: number;
  /** Retries the budget's window allows, and how many of them are left. */
  retryBudget: number;
  retryBudgetLeft: number;
}

export const TENANT_DIMENSIONS: readonly TenantDimension[] = ['tenant_rpm', 'tenant_tpm'];

/**
 * A tenant's own dimension (a wait it causes concerns only that tenant's jobs, not the pool's;
 * its level says nothing about the pool's pressure).
 */
export function isTenantDimension(value: string): value is TenantDimension {
  return (TENANT_DIMENSIONS as readonly string[]).includes(value);
}

export type AcquireResult =
  | {
      status: 'granted';
      reservation: Reservation;
      atMs: number;
      throttle?: ThrottleState;
      /**
       * With `throttle`: the model's unhealthy outcomes in a row, fleet-wide, before this call. More
       * than the job's own failed calls means other calls are failing too (a dead model, not one
       * bad request).
       */
      unhealthyRun?: number;
    }
  /**
   * Every dimension (and the model's cooldown, throttle and retry budget) can serve after `waitMs`,
   * if nobody else draws and nothing is given back. `sureWaitMs` (<= `waitMs`): the wait even if
   * every call in flight gave back all the output it reserved (a settle's refund at most), so
   * the part of a tokens/min wait refunds cannot cover; requests/min waits, input tokens,
   * cooldowns, the throttle and the retry budget are sure as they are. 0: the refunds to come
   * could cover the whole wait.
   */
  | { status: 'wait'; waitMs: number; reason: WaitReason; sureWaitMs: number; atMs: number; throttle?: ThrottleState }
  /**
   * The need is larger than this lane may ever draw from `dimension` (`maxDrawable`, rounded down):
   * waiting cannot help. `limit` is the per-minute limit that bound, configured or learned; the
   * lane's most is limit x burst / 60 (a tenant's: limit) less the lane's reserve.
   */
  | { status: 'never_fits'; dimension: Dimension; maxDrawable: number; limit: number; atMs: number };

/** Provider usage as reported, or Headroom's normalized `Usage`. */
export type SettleUsage =
  | { input_tokens: number; output_tokens: number; cache_creation_input_tokens?: number | null; cache_read_input_tokens?: number | null }
  | { prompt_tokens: number; completion_tokens: number }
  | { inputTokens: number; outputTokens: number; cacheCreationInputTokens?: number; cacheReadInputTokens?: number };

export type SettleResult =
  | {
      status: 'settled';
      /**
       * Corrections charged at settle time (negative = refunded; 0 where the dimension did not
       * bind). Requests move only for a `release` (a grant never sent).
       */
      delta: { requests: number; inputTokens: number; outputTokens: number; tokens: number; tenantRequests: number; tenantTokens: number };
      atMs: number;
    }
  /** The same reservation was handed to this bucket's `settle` before: nothing more is corrected. */
  | { status: 'duplicate'; atMs: number };

export interface SyncResult {
  lowered: PoolDimension[];
  atMs: number;
}

export type CooldownFor = { durationMs: number } | { untilMs: number };

export interface DimensionSnapshot {
  dimension: Dimension;
  /** What the bucket holds when full: the per-minute limit times burst / 60. */
  capacity: number;
  /** Where the binding limit came from: the config, or the provider's headers (none configured, or the config's is higher). */
  source: 'config' | 'learned';
  /** Can be negative after an underestimate was settled. */
  level: number;
  /** The refill: the per-minute limit / 60. */
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
  /**
   * The grants not yet settled or released (and not past their call's life): their count, the
   * output they reserved (what their settles may still give back), and that output per tenant
   * with limits.
   */
  inFlight: { calls: number; outputTokens: number; tenants: Record<string, number> };
  /** The models' adaptive throttles (with the bucket's `throttle` options and `models` asked for). */
  throttles: ThrottleSnapshot[];
  counters: {
    grants: Partial<Record<Lane, number>>;
    waits: Partial<Record<WaitReason, number>>;
    neverFits: Partial<Record<Dimension, number>>;
    cooldownsSet: number;
    lowered: Partial<Record<PoolDimension, number>>;
  };
}

export interface BucketOptions {
  /** Key prefix, as in the config's `redis.prefix`. @default 'hr' */
  prefix?: string;
  /**
   * How long a settle or a sync may wait for the next acquire to the same pool to carry it,
   * before an idle bucket sends it on its own. 0 sends each at once (two round trips per call).
   * @default 20
   */
  flushDelayMs?: number;
  /**
   * The fleet-wide adaptive throttle and retry budget per model, checked in the same call as the
   * pool (see lua/includes/model-throttle.lua). Every worker of a fleet must pass the same.
   * @default off
   */
  throttle?: ThrottleParams;
}

export interface CarryOptions {
  /**
   * Send at once (with whatever else is waiting for that pool) instead of riding on the next
   * acquire; for a caller that needs the result before it goes on.
   * @default false
   */
  immediate?: boolean;
}
