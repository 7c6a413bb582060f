import { randomUUID } from 'node:crypto';
import { fleetKeys } from '@headroom/queue';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaderLease } from './leader-lease.js';
import { type EmbeddedRedis, startEmbeddedRedis } from '@headroom/testing';

let server: EmbeddedRedis;
const conns: Redis[] = [];

beforeAll(async () => {
  server = await startEmbeddedRedis();
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await server.stop();
});

function setup() {
  const keys = fleetKeys(`t-${randomUUID().slice(0, 8)}`);
  let clock = 0;
  const lease = (holder: string, ttlMs = 10_000) => {
    const redis = new Redis(server.url);
    conns.push(redis);
    return new LeaderLease({ redis, keys, holder, ttlMs, monotonic: () => clock });
  };
  return { keys, lease, tick: (ms: number) => (clock += ms) };
}

describe('LeaderLease', () => {
  it('holds a lease taken after a long wait for Redis (a restart, its commands queued meanwhile) for its whole TTL', async () => {
    const { lease, tick } = setup();
    const a = lease('a');
    // The WATCH answers 20 s after it was sent, as one queued while Redis restarted does.
    const redis = (a as unknown as { opts: { redis: Redis } }).opts.redis;
    const watch = redis.watch.bind(redis);
    redis.watch = (async (...keys: string[]) => {
      const reply = await watch(...keys);
      tick(20_000);
      return reply;
    }) as typeof redis.watch;
    expect(await a.tryAcquire()).toBe(true);
    expect(a.isHeld()).toBe(true);
    expect(a.fence).toBe(1);
  });

  it('lets one holder in at a time, with a fence that grows with every lease', async () => {
    const { keys, lease } = setup();
    const a = lease('a');
    const b = lease('b');
    expect(await a.tryAcquire()).toBe(true);
    expect(a.fence).toBe(1);
    expect(await b.tryAcquire()).toBe(false);
    expect(await a.renew()).toBe(true);
    expect(await a.fenced((tx) => tx.set(`${keys.batchClaims}:probe`, 'a'))).toBe(true);
    await a.release();
    expect(await b.tryAcquire()).toBe(true);
    expect(b.fence).toBe(2);
  });

  it('hands the lease over when its holder stops renewing, and fences the old holder out', async () => {
    const { keys, lease } = setup();
    const a = lease('a', 1_000);
    const b = lease('b', 1_000);
    expect(await a.tryAcquire()).toBe(true);
    await new Promise((r) => setTimeout(r, 1_100)); // Redis expires the key: a's process stalled
    expect(await b.tryAcquire()).toBe(true);
    // a's own clock has not moved (it was frozen): it still believes, but Redis refuses it.
    expect(a.isHeld()).toBe(true);
    expect(await a.fenced((tx) => tx.set(`${keys.batchClaims}:probe`, 'a'))).toBe(false);
    expect(await a.renew()).toBe(false);
    expect(a.isHeld()).toBe(false);
    expect(b.fence).toBe(2);
  });

  it('stops acting on its own clock before the lease can expire in Redis', async () => {
    const { lease, tick } = setup();
    const a = lease('a', 10_000);
    expect(await a.tryAcquire()).toBe(true);
    tick(8_999);
    expect(a.isHeld()).toBe(true);
    tick(1);
    expect(a.isHeld()).toBe(false); // 1 s margin before the 10 s TTL
    expect(await a.fenced(() => {})).toBe(false);
  });
});
