/**
 * The bucket as the dashboard and `headroom status` read it: levels, learned limits, cooldowns,
 * tenants and counters, in one MULTI so they are consistent with each other.
 */
import type { Cluster, Redis } from 'ioredis';
import type { BucketSnapshot, Dimension, DimensionSnapshot, PoolDimension, PoolLimits, TenantLimits } from './bucket-types.js';
import { POOL_DIMENSIONS } from './bucket-types.js';
import type { PoolKeys } from './keys.js';
import { LANES } from './lanes.js';

export async function readSnapshot(
  redis: Redis | Cluster,
  k: PoolKeys,
  pool: string,
  limits: PoolLimits,
  options: { tenants?: Record<string, TenantLimits> } = {},
): Promise<Omit<BucketSnapshot, 'throttles'>> {
  const tenants = Object.entries(options.tenants ?? {});
  const multi = redis
    .multi()
    .time()
    .getBuffer(k.bucket)
    .zrange(k.cooldowns, '0', '-1', 'WITHSCORES')
    .hgetall(k.stats)
    .zrange(k.inFlight, '0', '-1', 'WITHSCORES');
  for (const [id] of tenants) multi.hgetall(k.tenantBucket(id));
  const results = (await multi.exec()) ?? [];
  const value = (i: number): unknown => {
    const [err, v] = results[i] ?? [new Error('missing reply'), null];
    if (err) throw err;
    return v;
  };
  const [sec, usec] = (value(0) as [string, string]).map(Number) as [number, number];
  const now = (sec * 1_000_000 + usec) / 1000;
  const bucket = poolState(value(1) as Buffer | null);
  const learned: PoolLimits = {};
  for (const d of POOL_DIMENSIONS) if (bucket[`limit:${d}`] !== undefined) learned[d] = Number(bucket[`limit:${d}`]);

  const dimensions: DimensionSnapshot[] = [];
  const unbound: PoolDimension[] = [];
  for (const d of POOL_DIMENSIONS) {
    // As acquire.lua paces it: the lower of the configured and the learned limit.
    const configured = limits[d];
    const announced = learned[d];
    const capacity = configured === undefined ? announced : announced === undefined ? configured : Math.min(configured, announced);
    if (capacity === undefined) unbound.push(d);
    else dimensions.push(dimensionAt(d, capacity, capacity === configured ? 'config' : 'learned', bucket, d, now, limits.burst ?? 60));
  }

  const tenantDims: Record<string, DimensionSnapshot[]> = {};
  tenants.forEach(([id, tl], i) => {
    const raw = value(5 + i) as Record<string, string>;
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
  return { pool, atMs: now, dimensions, unbound, learned, cooldowns, tenants: tenantDims, inFlight: inFlightAt(value(4) as string[], now), counters: counters(value(3) as Record<string, string>, bucket) };
}

/** The in-flight entries still counting at `now` (lua/includes/in-flight.lua), summed. */
function inFlightAt(zs: string[], now: number): BucketSnapshot['inFlight'] {
  const inFlight: BucketSnapshot['inFlight'] = { calls: 0, outputTokens: 0, tenants: {} };
  for (let i = 0; i + 1 < zs.length; i += 2) {
    if (Number(zs[i + 1]) <= now) continue;
    const [, out, tenant] = /^[^|]*\|([^|]*)\|(.*)$/.exec(zs[i] as string) ?? [];
    const n = Number(out ?? 0);
    inFlight.calls += 1;
    inFlight.outputTokens += n;
    if (tenant) inFlight.tenants[tenant] = (inFlight.tenants[tenant] ?? 0) + n;
  }
  return inFlight;
}

const STATE_FIELDS = ['ts', 'rpm', 'itpm', 'otpm', 'tpm', 'limit:rpm', 'limit:itpm', 'limit:otpm', 'limit:tpm', ...LANES.map((l) => `grant:${l}`)];

/** The pool state (see lua/includes/pool-state.lua) as fields; a learned limit of 0 = none. */
function poolState(raw: Buffer | null): Record<string, string> {
  const fields: Record<string, string> = {};
  if (!raw || raw.length !== STATE_FIELDS.length * 8) return fields;
  for (const [i, name] of STATE_FIELDS.entries()) {
    const n = raw.readDoubleLE(i * 8);
    if (n !== 0 || !/^(limit|grant):/.test(name)) fields[name] = String(n);
  }
  return fields;
}

/** `limit` is per minute and sets the refill; the capacity is `burstSec` seconds of it. */
function dimensionAt(
  dimension: Dimension,
  limit: number,
  source: 'config' | 'learned',
  hash: Record<string, string>,
  field: string,
  now: number,
  burstSec = 60,
): DimensionSnapshot {
  const ts = hash.ts;
  const stored = hash[field];
  const ratePerMs = limit / 60_000;
  const capacity = (limit * burstSec) / 60;
  const elapsed = ts === undefined ? 0 : Math.max(0, now - Number(ts));
  const used = stored === undefined ? 0 : Math.max(0, Number(stored) - elapsed * ratePerMs);
  return { dimension, capacity, source, level: capacity - used, ratePerSec: limit / 60, fullInMs: used / ratePerMs };
}

/**
 * Grants are counted in the pool state; the stats hash holds the rest, and the grants of versions
 * before the state (which counted them there), added in so a rolling upgrade loses none.
 */
function counters(stats: Record<string, string>, state: Record<string, string>): BucketSnapshot['counters'] {
  const c: BucketSnapshot['counters'] = { grants: {}, waits: {}, neverFits: {}, cooldownsSet: 0, lowered: {} };
  const groups = { grant: c.grants, wait: c.waits, never: c.neverFits, lowered: c.lowered } as Record<string, Record<string, number>>;
  const grants = Object.entries(state).filter(([field]) => field.startsWith('grant:'));
  for (const [field, v] of [...Object.entries(stats), ...grants]) {
    const n = Number(v);
    const [group, name] = field.split(':', 2);
    if (field === 'cooldowns') c.cooldownsSet = n;
    else if (group && name && groups[group]) {
      const g = groups[group] as Record<string, number>;
      g[name] = (g[name] ?? 0) + n;
    }
  }
  return c;
}
