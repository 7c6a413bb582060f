/**
 * Removes every key under one prefix: what a run that borrowed someone's Redis (`pnpm demo` with
 * REDIS_URL set) leaves there otherwise, most of it with no TTL. SCAN, never KEYS, so a large
 * shared Redis is not blocked; on a Cluster each master is scanned, since SCAN sees one node.
 *
 * ```ts
 * await removeKeysUnder(createRedis(url, 'producer'), 'demo-3f9a1c'); // number of keys removed
 * ```
 */
import { Cluster, type Redis } from 'ioredis';
import { keysUnderPattern, PREFIX_PATTERN } from './keys.js';

export async function removeKeysUnder(conn: Redis | Cluster, prefix: string): Promise<number> {
  // A prefix with a glob character (or none) would match other prefixes' keys: refuse it outright.
  if (!PREFIX_PATTERN.test(prefix)) throw new RangeError(`not a key prefix: ${JSON.stringify(prefix)}`);
  const nodes = conn instanceof Cluster ? conn.nodes('master') : [conn];
  let removed = 0;
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', keysUnderPattern(prefix), 'COUNT', 1000);
      cursor = next;
      if (keys.length === 0) continue;
      // One key per UNLINK: a prefix's keys sit under several hash tags, and one multi-key
      // UNLINK across slots is refused on a Cluster (CROSSSLOT).
      const pipeline = node.pipeline();
      for (const key of keys) pipeline.unlink(key);
      for (const [err, n] of (await pipeline.exec()) ?? []) {
        if (err) throw err;
        removed += Number(n);
      }
    } while (cursor !== '0');
  }
  return removed;
}
