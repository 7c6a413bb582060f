import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, parseConfig } from '@headroom/queue';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startWorker } from '../worker.js';

let server: EmbeddedRedis;

beforeAll(async () => {
  server = await startEmbeddedRedis();
});
afterAll(async () => {
  await server.stop();
});

/** `ready-lanes.lua` is called with five keys per lane: wait, prioritized, delayed, marker, meta. */
const isReadyLanes = (args: string[]) => args[0]?.toLowerCase() === 'evalsha' && Number(args[2]) % 5 === 0 && args[3]?.endsWith(':wait') === true && args[6]?.endsWith(':marker') === true;

describe('an idle worker', () => {
  it('asks Redis about the lanes once per wake from its blocking wait, not once per lane', async () => {
    const prefix = 'idle1';
    const config = parseConfig({
      redis: { prefix },
      // No job is added: no provider is called.
      providers: { anthropic: { baseURL: 'http://127.0.0.1:9', apiKeyEnv: 'IDLE_TEST_KEY' } },
      models: { 'claude-sonnet-4-6': { provider: 'anthropic', limits: { rpm: 60, itpm: 100_000, otpm: 100_000 } } },
      // The batcher, which looks at the BATCH lane on its own clock, is not what this counts.
      batch: { enabled: false },
    });
    const worker = await startWorker({ config, redisUrl: server.url, env: { IDLE_TEST_KEY: 'sk-idle' }, logger: createLogger({ level: 'silent' }) });
    const monitor = await new Redis(server.url).monitor();
    let waits = 0;
    let looks = 0;
    const interactive = (args: string[]) => args.slice(3, 3 + Number(args[2])).some((k) => /:(critical|high|normal|low):wait$/.test(k));
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'bzpopmin' && args[1]?.startsWith(`{${prefix}:`)) waits++;
      else if (isReadyLanes(args) && args[3]?.startsWith(`{${prefix}:`) && interactive(args)) looks++;
    });
    try {
      // Idle, the worker's blocking wait times out once a second and it looks at every lane:
      // counted over three such waits, however long a busy machine takes for them.
      await expect.poll(() => waits, { timeout: 25_000, interval: 100 }).toBeGreaterThanOrEqual(3);
    } finally {
      monitor.disconnect();
      await worker.close({ graceMs: 100 });
    }
    // Each wake is one look over the lanes (before: one per lane still unknown, 4 for 1).
    expect(looks).toBeLessThanOrEqual(waits + 1);
  });
});
