/**
 * What a worker does as it starts, on a real Redis with the provider simulator: it brings back the
 * jobs another worker parked behind a tenant quota its own config raises.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addToLane, createLogger, laneKeys, parseConfig, type LlmJob } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startWorker } from './worker.js';

const SONNET = 'claude-sonnet-4-6';
const ENV = { START_TEST_KEY: 'sk-start' };

let server: EmbeddedRedis;
let sim: Simulator;
let admin: Redis;

beforeAll(async () => {
  server = await startEmbeddedRedis();
  sim = await startSimulator({ latencyMs: 0 });
  admin = new Redis(server.url);
});
afterAll(async () => {
  admin.disconnect();
  await sim.close();
  await server.stop();
});

const configWith = (prefix: string, tpm: number) =>
  parseConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'START_TEST_KEY' } },
    models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 1_000, itpm: 400_000, otpm: 100_000 } } },
    tenants: { overrides: { acme: { tpm } } },
    batch: { enabled: false },
  });

describe('a worker starting', () => {
  it("brings back at once the jobs parked behind a tenant's quota when its config raises that quota", async () => {
    const prefix = `start${randomUUID().slice(0, 8)}`;
    const k = laneKeys(prefix, 'normal');
    // Each job draws 1,500 output tokens of acme's 2,000 a minute: the first runs, the others are
    // parked a refill apart (up to a minute), by the worker that told them to wait.
    const first = await startWorker({ config: configWith(prefix, 2_000), redisUrl: server.url, env: ENV, logger: createLogger({ level: 'silent' }) });
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: admin });
    const ids = Array.from({ length: 4 }, () => `normal.${randomUUID()}`);
    const job = (i: number): LlmJob => ({ priority: 'NORMAL', provider: 'anthropic', tenant: 'acme', request: { model: SONNET, max_tokens: 1_500, messages: [{ role: 'user', content: `question ${i}` }] } }) as LlmJob;
    await addToLane(admin, queue, prefix, 'normal', ids.map((jobId, i) => ({ jobId, job: job(i) })));
    const parked = async () => {
      const delayed = await admin.zrange(k.delayed, '0', '-1');
      const marks = await Promise.all(delayed.map((id) => admin.hget(`${k.jobKeyPrefix}${id}`, 'hrTenantPark')));
      return marks.filter((m) => m === 'acme|2000').length;
    };
    try {
      await expect.poll(parked, { timeout: 20_000, interval: 50 }).toBeGreaterThanOrEqual(2);
    } finally {
      await first.close({ graceMs: 100 });
    }
    expect(await parked()).toBeGreaterThanOrEqual(2);

    // The fleet restarts with acme's quota raised: its parked jobs are not left to their parks.
    const second = await startWorker({ config: configWith(prefix, 100_000), redisUrl: server.url, env: ENV, logger: createLogger({ level: 'silent' }) });
    try {
      // None is parked under the old quota any more (one parked again is parked under the new one).
      expect(await parked()).toBe(0);
      await expect.poll(async () => (await Promise.all(ids.map(async (id) => (await queue.getJob(id))?.getState()))).every((s) => s === 'completed'), { timeout: 30_000, interval: 100 }).toBe(true);
    } finally {
      await second.close({ graceMs: 100 });
      await queue.close();
    }
  });
});
