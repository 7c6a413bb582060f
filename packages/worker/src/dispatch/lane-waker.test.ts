import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INTERACTIVE_LANES, laneKeys, type InteractiveLane } from '@headroom/queue';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { LaneWaker } from './lane-waker.js';

let server: EmbeddedRedis;
let redis: Redis;
let seq = 0;
const open: { close(): unknown }[] = [];

beforeAll(async () => {
  server = await startEmbeddedRedis();
  redis = new Redis(server.url);
});
afterAll(async () => {
  for (const o of open.splice(0)) await o.close();
  redis.disconnect();
  await server.stop();
});

/** A fleet's lanes as BullMQ queues (BullMQ writes the markers), and one dispatcher's waker. */
function fleet() {
  const prefix = `wake${++seq}`;
  const queue = (lane: InteractiveLane) => {
    const k = laneKeys(prefix, lane);
    const q = new Queue(k.queueName, { prefix: k.bullPrefix, connection: redis });
    open.push(q);
    return q;
  };
  const waker = new LaneWaker(new Redis(server.url, { maxRetriesPerRequest: null }), prefix, INTERACTIVE_LANES);
  open.push(waker);
  return { prefix, queue, waker };
}

describe('LaneWaker', () => {
  it('blocks while every lane is empty and wakes for the lane a job is added to', async () => {
    const { queue, waker } = fleet();
    const woke = waker.wait(30_000);
    // The wait is blocked in Redis (nothing to take): the add is what ends it, not the timeout.
    await new Promise((r) => setTimeout(r, 50));
    await queue('normal').add('anthropic:m', { n: 1 });
    await expect(woke).resolves.toEqual({ lane: 'normal', dueAt: 0 });
  });

  it('takes the CRITICAL marker first when several lanes have work', async () => {
    const { queue, waker } = fleet();
    await queue('low').add('anthropic:m', {});
    await queue('critical').add('anthropic:m', {});
    await queue('high').add('anthropic:m', {});
    expect((await waker.wait(1_000))?.lane).toBe('critical');
    expect((await waker.wait(1_000))?.lane).toBe('high');
    expect((await waker.wait(1_000))?.lane).toBe('low');
  });

  it("says when a lane's next delayed job is due", async () => {
    const { queue, waker } = fleet();
    const before = Date.now();
    await queue('high').add('anthropic:m', {}, { delay: 60_000 });
    const woke = await waker.wait(1_000);
    expect(woke?.lane).toBe('high');
    expect(woke!.dueAt).toBeGreaterThanOrEqual(before + 60_000);
  });

  it('returns nothing when the wait times out', async () => {
    const { waker } = fleet();
    await expect(waker.wait(20)).resolves.toBeUndefined();
  });

  it('lets close() end a blocked wait', async () => {
    const { waker } = fleet();
    const woke = waker.wait(30_000);
    waker.close();
    await expect(woke).resolves.toBeUndefined();
  });

  it('lets close() end a wait while Redis is unreachable (ioredis never settles that command once disconnected)', async () => {
    const gone = await startEmbeddedRedis();
    const conn = new Redis(gone.url, { maxRetriesPerRequest: null });
    conn.on('error', () => {});
    const waker = new LaneWaker(conn, 'wake-gone', INTERACTIVE_LANES);
    await conn.ping();
    await gone.stop({ kill: true });
    await new Promise<void>((resolve) => conn.once('reconnecting', () => resolve()));
    const woke = waker.wait(30_000);
    waker.close();
    await expect(woke).resolves.toBeUndefined();
  });
});
