/**
 * A lane full of jobs its workers hold to put back. In a cooldown (a 429 storm) a worker that took
 * a job it may not start puts it back; when the lane is full it keeps it (active in BullMQ, its
 * lock held) and records it in the lane's `returning` set, which admission counts against the cap
 * (add-9.lua). The overview counted only BullMQ's waiting, prioritized and delayed jobs: the lane
 * refused QUEUE_FULL while the page, `headroom status` and `--check` showed it below its cap.
 */
import { laneKeys } from '@headroom/queue';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dashboardOnOwnRedis, type DashboardOnRedis } from './dashboard-on-redis.test-support.js';
import type { Overview } from './overview.js';

const PREFIX = 'dret';
let fixture: DashboardOnRedis;
let redis: Redis;
beforeAll(async () => {
  fixture = await dashboardOnOwnRedis({ redis: { prefix: PREFIX }, models: { 'claude-haiku-4-5': { provider: 'anthropic' } }, lanes: { high: { cap: 3 } } });
  redis = new Redis(fixture.redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  redis?.disconnect();
  await fixture?.close();
});

async function highLane(): Promise<Overview['lanes'][number]> {
  const overview = (await (await fetch(`${fixture.dash.url}/api/overview`)).json()) as Overview;
  return overview.lanes.find((l) => l.lane === 'high')!;
}

describe('a lane whose workers hold jobs to put back', () => {
  it('counts them as queued, as its cap does, and not as running', async () => {
    const k = laneKeys(PREFIX, 'high');
    const queue = new Queue(k.queueName, { connection: redis, prefix: k.bullPrefix });
    // Two jobs started (active), one waiting; the two running ones are held to be put back, as
    // returnToLane records them when the lane is full (job id -> when its worker last tried).
    await queue.add('job', {}, { jobId: 'a' });
    await queue.add('job', {}, { jobId: 'b' });
    await queue.add('job', {}, { jobId: 'c' });
    const worker = new Worker(k.queueName, null, { connection: redis, prefix: k.bullPrefix });
    await worker.getNextJob('t1');
    await worker.getNextJob('t2');
    await redis.zadd(k.returning, Date.now(), 'a', Date.now(), 'b');

    const high = await highLane();
    expect(high.counts.active).toBe(2);
    expect(high.queued).toBe(3);
    expect(high.running).toBe(0);

    const metrics = await (await fetch(`${fixture.dash.url}/metrics`)).text();
    expect(metrics).toMatch(/^headroom_lane_queued\{lane="high"\} 3$/m);

    await worker.close();
    await queue.close();
  });
});
