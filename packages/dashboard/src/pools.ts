/**
 * The fleet's bucket pools as the config defines them, and one read of all their buckets.
 */
import { poolOf, type Bucket, type BucketSnapshot, type HeadroomConfig, type PoolLimits, type Provider } from '@headroom/queue';

export interface PoolInfo {
  pool: string;
  provider: Provider;
  models: string[];
  /** The pool's limits, burst included: every model of a pool has the same (the config refuses others). */
  limits: PoolLimits;
}

export function poolsOf(config: HeadroomConfig): PoolInfo[] {
  const pools = new Map<string, PoolInfo>();
  for (const [model, m] of Object.entries(config.models)) {
    const name = poolOf(config, model);
    const info = pools.get(name) ?? { pool: name, provider: m.provider, models: [], limits: m.limits };
    info.models.push(model);
    pools.set(name, info);
  }
  return [...pools.values()].sort((a, b) => a.pool.localeCompare(b.pool));
}

/** used / capacity; above 1 when a settle charged more than the bucket held. */
export const utilizationOf = (d: { capacity: number; level: number }): number => (d.capacity > 0 ? (d.capacity - d.level) / d.capacity : 0);

export async function readPools(bucket: Bucket, pools: readonly PoolInfo[]): Promise<BucketSnapshot[]> {
  return Promise.all(pools.map((p) => bucket.snapshot(p.pool, p.limits, { models: p.models })));
}
