import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '@headroom/testing';
import { addToLane, publishFleetSettings } from '../admission.js';
import { parseConfig } from '../config.js';
import { ErrorCode } from '../errors.js';
import type { LlmJob } from '../job.js';
import { laneKeys } from '../keys.js';
import { FleetStatsWriter, readFleetStats } from './fleet-stats.js';

let server: EmbeddedRedis;
let redis: Redis;

beforeAll(async () => {
  server = await startEmbeddedRedis();
  redis = new Redis(server.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

describe('fleet stats', () => {
  it("counts LOW jobs refused SHED at admission in the window's shed figure, beside the sheds workers count", async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic', pool: 'sonnet' } } }));
    const k = laneKeys(prefix, 'low');
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: redis });
    try {
      const [sec] = await redis.time();
      // The entry a worker's pressure monitor writes: untilMs:retryAfterMs:pressure (Redis time).
      await redis.hset(k.shedding, 'sonnet', `${Number(sec) * 1000 + 60_000}:4000:0.970`);
      const job = { priority: 'LOW', provider: 'anthropic', request: { model: 'claude-sonnet-4-6', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } } as LlmJob;
      const refused = await addToLane(redis, queue, prefix, 'low', [1, 2].map(() => ({ jobId: `low.${randomUUID()}`, job })));
      expect(refused.map((r) => (r as { code?: string }).code)).toEqual([ErrorCode.SHED, ErrorCode.SHED]);
      // A waiting job a worker shed, counted by the worker.
      const writer = new FleetStatsWriter(redis, prefix);
      writer.jobEnded({ lane: 'low', outcome: 'shed' });
      await writer.flush();

      const now = Number(sec) * 1000;
      expect((await readFleetStats(redis, prefix, 15, now)).lanes.low).toMatchObject({ shed: 3 });
      // Only within the window: a window that has moved past the refusals leaves them out.
      expect((await readFleetStats(redis, prefix, 15, now + 20 * 60_000)).lanes.low?.shed ?? 0).toBe(0);
    } finally {
      await queue.close();
    }
  });
});
