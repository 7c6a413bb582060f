/**
 * The fleet's bucket pools as the config defines them, and one read of all their buckets.
 */
import { POOL_DIMENSIONS, poolOf, type Bucket, type BucketSnapshot, type HeadroomConfig, type PoolLimits, type Provider } from '@headroom/queue';

export interface PoolInfo {
  pool: string;
  provider: Provider;
  models: string[];
  /**
   * Per dimension, the lowest limit any of the pool's models configures: the models of one pool
   * should agree, and when they do not, the lowest is the one that binds first.
   */
  limits: PoolLimits;
}

export function poolsOf(config: HeadroomConfig): PoolInfo[] {
  const pools = new Map<string, PoolInfo>();
  for (const [model, m] of Object.entries(config.models)) {
    const name = poolOf(config, model);
    let info = pools.get(name);
    if (!info) {
      info = { pool: name, provider: m.provider, models: [], limits: {} };
      pools.set(name, info);
    }
    info.models.push(model);
    for (const d of POOL_DIMENSIONS) {
      const limit = m.limits[d];
      if (limit !== undefined) info.limits[d] = Math.min(limit, info.limits[d] ?? Number.POSITIVE_INFINITY);
    }
  }
  return [...pools.values()].sort((a, b) => a.pool.localeCompare(b.pool));
}

/** used / capacity; above 1 when a settle charged more than the bucket held. */
export const utilizationOf = (d: { capacity: number; level: number }): number => (d.capacity > 0 ? (d.capacity - d.level) / d.capacity : 0);

export async function readPools(bucket: Bucket, pools: readonly PoolInfo[]): Promise<BucketSnapshot[]> {
  return Promise.all(pools.map((p) => bucket.snapshot(p.pool, p.limits, { models: p.models })));
}
