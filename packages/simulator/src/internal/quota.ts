// The rate-limit state of the whole simulator: one set of buckets per (api key, pool), checked and
// charged all-or-nothing, so a refused request never leaves a partial charge behind (the trap of
// composing separate limiters).

import { checkLimits, type ModelLimits } from './options.js';
import { TokenBucket } from './token-bucket.js';

/** requests (RPM); input / output tokens (Anthropic ITPM / OTPM); tokens (OpenAI TPM). */
export type Dimension = 'requests' | 'input' | 'output' | 'tokens';
export type Charge = Partial<Record<Dimension, number>>;

export interface DimensionState {
  limit: number;
  /** Whole units left now; never negative. */
  remaining: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
}
export type QuotaSnapshot = Partial<Record<Dimension, DimensionState>>;

export type Admission =
  | { ok: true }
  | {
      ok: false;
      /** The dimension that needs the longest wait. */
      dimension: Dimension;
      /** Milliseconds until every dimension can serve; Infinity when the request exceeds a limit outright. */
      waitMs: number;
    };

const LIMIT_FIELD: Record<Dimension, keyof ModelLimits> = {
  requests: 'rpm',
  input: 'itpm',
  output: 'otpm',
  tokens: 'tpm',
};
const DIMENSIONS = Object.keys(LIMIT_FIELD) as Dimension[];

export class Quota {
  readonly #base: Map<string, ModelLimits>;
  readonly #buckets = new Map<string, Map<Dimension, TokenBucket>>();
  #scale = 1;

  constructor(poolLimits: Map<string, ModelLimits>) {
    this.#base = new Map([...poolLimits].map(([pool, limits]) => [pool, { ...limits }]));
  }

  /** Effective limits per dimension: the configured limit times the current scale. */
  limits(pool: string): Partial<Record<Dimension, number>> {
    const base = this.#base.get(pool);
    const out: Partial<Record<Dimension, number>> = {};
    if (!base) return out;
    for (const dim of DIMENSIONS) {
      const value = base[LIMIT_FIELD[dim]];
      if (value !== undefined) out[dim] = Math.max(1, Math.round(value * this.#scale));
    }
    return out;
  }

  get scale(): number {
    return this.#scale;
  }

  configuredLimits(pool: string): ModelLimits | undefined {
    const base = this.#base.get(pool);
    return base && { ...base };
  }

  acquire(apiKey: string, pool: string, charge: Charge, now: number): Admission {
    const buckets = this.#bucketsFor(apiKey, pool, now);
    let worst: { dimension: Dimension; waitMs: number } | null = null;
    for (const [dim, bucket] of buckets) {
      const amount = charge[dim] ?? 0;
      if (amount <= 0) continue;
      const waitMs = bucket.waitFor(amount, now);
      if (waitMs > 0 && (!worst || waitMs > worst.waitMs)) worst = { dimension: dim, waitMs };
    }
    if (worst) return { ok: false, ...worst };
    for (const [dim, bucket] of buckets) {
      const amount = charge[dim] ?? 0;
      if (amount > 0) bucket.take(amount, now);
    }
    return { ok: true };
  }

  /** Gives back what was reserved but not used (e.g. `max_tokens` minus the actual output). */
  refund(apiKey: string, pool: string, charge: Charge, now: number): void {
    const buckets = this.#buckets.get(bucketKey(apiKey, pool));
    if (!buckets) return; // reset() while the request was in flight: nothing to give back to
    for (const [dim, bucket] of buckets) {
      const amount = charge[dim] ?? 0;
      if (amount > 0) bucket.refund(amount, now);
    }
  }

  snapshot(apiKey: string, pool: string, now: number): QuotaSnapshot {
    const out: QuotaSnapshot = {};
    for (const [dim, bucket] of this.#bucketsFor(apiKey, pool, now)) {
      out[dim] = {
        limit: bucket.capacity,
        remaining: Math.max(0, Math.floor(bucket.level(now))),
        resetMs: bucket.msUntilFull(now),
      };
    }
    return out;
  }

  /** Fields not given keep their configured value. */
  setLimits(pool: string, limits: Partial<ModelLimits>, now: number): void {
    const merged = { ...this.#base.get(pool), ...limits } as ModelLimits;
    checkLimits(pool, merged);
    this.#base.set(pool, merged);
    this.#applyLimits(now, pool);
  }

  /** Scales every configured limit (1 restores them): a brownout, or its end. */
  setScale(factor: number, now: number): void {
    if (!(factor > 0 && Number.isFinite(factor))) throw new RangeError(`scale must be a positive number, got ${factor}`);
    this.#scale = factor;
    this.#applyLimits(now);
  }

  reset(): void {
    this.#buckets.clear();
  }

  #applyLimits(now: number, onlyPool?: string): void {
    for (const [key, buckets] of this.#buckets) {
      const pool = poolOfKey(key);
      if (onlyPool !== undefined && pool !== onlyPool) continue;
      const limits = this.limits(pool);
      for (const dim of DIMENSIONS) {
        const limit = limits[dim];
        const bucket = buckets.get(dim);
        if (limit === undefined) buckets.delete(dim);
        else if (bucket) bucket.setCapacity(limit, now);
        else buckets.set(dim, new TokenBucket(limit, now));
      }
    }
  }

  #bucketsFor(apiKey: string, pool: string, now: number): Map<Dimension, TokenBucket> {
    const key = bucketKey(apiKey, pool);
    let buckets = this.#buckets.get(key);
    if (!buckets) {
      buckets = new Map();
      for (const [dim, limit] of Object.entries(this.limits(pool)) as [Dimension, number][]) {
        buckets.set(dim, new TokenBucket(limit, now));
      }
      this.#buckets.set(key, buckets);
    }
    return buckets;
  }
}

// The pool first: pool names never contain NUL, api keys might contain anything.
function bucketKey(apiKey: string, pool: string): string {
  return `${pool}\u0000${apiKey}`;
}

function poolOfKey(key: string): string {
  return key.slice(0, key.indexOf('\u0000'));
}
