import { redisForFile } from '@headroom/testing/vitest';
import { describe, expect, it } from 'vitest';
import { fleetKeys, laneKeys, poolKeys } from './keys.js';
import { removeKeysUnder } from './remove-prefix.js';

const db = redisForFile();

describe('removeKeysUnder', () => {
  it("removes every key of the prefix, whatever its hash tag, and nothing of another prefix's", async () => {
    const mine = [laneKeys('demo-a1', 'critical').wait, laneKeys('demo-a1', 'low').settings, poolKeys('demo-a1', 'sonnet').bucket, fleetKeys('demo-a1').workers];
    // Look-alikes: a prefix that extends this one, a prefix it extends, and keys outside any tag.
    const others = [laneKeys('demo-a12', 'critical').wait, laneKeys('demo-a', 'critical').wait, 'demo-a1:plain', 'unrelated'];
    // More than one SCAN page's worth, so the cursor loop is walked.
    const many = Array.from({ length: 2500 }, (_, i) => `${laneKeys('demo-a1', 'normal').jobKeyPrefix}${i}`);
    for (const key of [...mine, ...others, ...many]) await db.redis.set(key, 'x');
    expect(await removeKeysUnder(db.redis, 'demo-a1')).toBe(mine.length + many.length);
    expect(await db.redis.exists(...mine, ...many.slice(0, 100))).toBe(0);
    expect(await db.redis.exists(...others)).toBe(others.length);
    expect(await removeKeysUnder(db.redis, 'demo-a1')).toBe(0);
  });

  it('refuses a prefix that would match other keys', async () => {
    await expect(removeKeysUnder(db.redis, '*')).rejects.toThrow(RangeError);
    await expect(removeKeysUnder(db.redis, '')).rejects.toThrow(RangeError);
  });
});
