import { describe, expect, it } from 'vitest';
import { redisForFile } from '@headroom/testing/vitest';
import { holdLease, releaseLease } from './lease.js';

const db = redisForFile();
let seq = 0;

describe('holdLease', () => {
  it('takes a free lease, renews it for its holder, refuses it to another, and is given up only by its holder', async () => {
    const key = `lease-test-${++seq}`;
    expect(await holdLease(db.redis, key, 'a', 1_000)).toBe(true);
    expect(await holdLease(db.redis, key, 'b', 1_000)).toBe(false);
    expect(await holdLease(db.redis, key, 'a', 60_000)).toBe(true);
    // Renewed for the new ttl: far past the first one's second, however slow the machine.
    expect(await db.redis.pttl(key)).toBeGreaterThan(1_000);
    await releaseLease(db.redis, key, 'b');
    expect(await db.redis.get(key)).toBe('a');
    await releaseLease(db.redis, key, 'a');
    expect(await holdLease(db.redis, key, 'b', 1_000)).toBe(true);
  });

  it('passes to another holder once it expires', async () => {
    const key = `lease-test-${++seq}`;
    expect(await holdLease(db.redis, key, 'a', 50)).toBe(true);
    while ((await db.redis.exists(key)) === 1) await new Promise((r) => setTimeout(r, 10));
    expect(await holdLease(db.redis, key, 'b', 1_000)).toBe(true);
    await expect(holdLease(db.redis, key, 'b', 0)).rejects.toThrow(RangeError);
  });
});
