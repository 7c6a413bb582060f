/**
 * A lease for work any process may do but one at a time is enough (lua/lease-1.lua): one script
 * call takes it when nobody holds it and renews it for its holder. Two holders for a moment (a
 * holder stalled past its ttl) do no harm where it is used: their writes are the same.
 */
import type { Cluster, Redis } from 'ioredis';
import { runScript } from './scripts.js';

/** Takes or renews the lease for `ttlMs`; true when `holder` holds it now. */
export async function holdLease(redis: Redis | Cluster, key: string, holder: string, ttlMs: number): Promise<boolean> {
  if (!(ttlMs > 0)) throw new RangeError(`holdLease: ttlMs must be positive, got ${ttlMs}`);
  return (await runScript<number>(redis, 'lease', [key], [holder, Math.ceil(ttlMs)])) === 1;
}

/** Gives the lease up if `holder` holds it, so another process takes it at once rather than at its expiry. */
export async function releaseLease(redis: Redis | Cluster, key: string, holder: string): Promise<void> {
  await runScript<number>(redis, 'lease', [key], [holder, 0]);
}
