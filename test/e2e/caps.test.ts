/**
 * Lane caps on every path, with a real worker, Redis and the official SDK against the simulator:
 * jobs the worker puts back (told to wait for quota) never take a lane past its cap however hard
 * producers keep it full, and after Redis loses the fleet's settings (FLUSHALL with the worker
 * running) admission refuses rather than admit against defaults, until the worker publishes them
 * again. Assertions are on counts and states, never on how fast anything ran.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeadroomError, Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { createLogger, laneKeys, parseConfig, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startWorker, type RunningWorker } from '@headroom/worker';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { until } from '../support/probes.js';

const SONNET = 'claude-sonnet-4-6';
const ENV = { CAPS_TEST_KEY: 'sk-caps-test' };

let redis: EmbeddedRedis;
let admin: Redis;
let sim: Simulator;
const closers: { close(): Promise<unknown> }[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
  // 6 requests a minute: after the burst, the bucket tells nearly every job to wait.
  sim = await startSimulator({ models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 6, itpm: 100_000, otpm: 100_000 } } }, latencyMs: 5 });
});
afterAll(async () => {
  for (const c of closers.reverse()) await c.close();
  admin?.disconnect();
  await sim?.close();
  await redis?.stop();
});

async function fleet(extra: Partial<HeadroomConfigInput>): Promise<{ prefix: string; producer: Producer; worker: RunningWorker }> {
  const prefix = `caps-${randomUUID().slice(0, 8)}`;
  const config = parseConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'CAPS_TEST_KEY' } },
    models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 6, itpm: 100_000, otpm: 100_000 } } },
    ...extra,
  });
  const worker = await startWorker({ config, redisUrl: redis.url, env: ENV, logger: createLogger({ level: 'silent' }) });
  closers.push(worker);
  const producer = new Producer({ redis: redis.url, prefix });
  closers.push(producer);
  return { prefix, producer, worker };
}

const job = (i: number, extra: Partial<LlmJobInput> = {}): LlmJobInput =>
  ({ priority: 'NORMAL', provider: 'anthropic', request: { model: SONNET, max_tokens: 8, messages: [{ role: 'user', content: `q${i}` }] }, ...extra }) as LlmJobInput;

describe('lane caps', () => {
  it('never holds more than its cap of jobs not yet started while the worker puts waiting jobs back and producers keep it full', async () => {
    const { prefix, producer, worker } = await fleet({ lanes: { normal: { cap: 5 } }, dispatch: { concurrency: 8 } });
    const k = laneKeys(prefix, 'normal');
    const notStarted = async () => (await admin.llen(k.wait)) + (await admin.zcard(k.prioritized)) + (await admin.zcard(k.delayed));
    let most = 0;
    let refused = 0;
    let accepted = 0;
    // Producers refill every slot the worker frees; each job the worker takes is told to wait
    // for quota and goes back (or is held until it may), 300 rounds of it.
    for (let round = 0; round < 300; round++) {
      const r = await producer.enqueue(job(round)).then(
        () => 'accepted' as const,
        (e: unknown) => (e instanceof HeadroomError && e.code === 'QUEUE_FULL' ? ('refused' as const) : Promise.reject(e)),
      );
      if (r === 'accepted') accepted += 1;
      else refused += 1;
      most = Math.max(most, await notStarted());
    }
    const waits = (await worker.metrics.registry.getSingleMetricAsString('headroom_bucket_waits_total'))
      .split('\n')
      .filter((l) => l.startsWith('headroom_bucket_waits_total{'))
      .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    // The path under test ran: jobs were told to wait and put back, and the lane was full.
    expect(waits).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(5);
    expect(most).toBeLessThanOrEqual(5);
  });

  it('refuses, rather than admits against defaults, after Redis loses the settings; the worker publishes them again', async () => {
    const { prefix, producer } = await fleet({ lanes: { high: { cap: 3 } }, tenants: { default: { maxQueued: 2 } } });
    const k = laneKeys(prefix, 'high');
    await admin.flushall();
    // Right after the loss: an unknown model, a tenant past its quota, a lane past its cap would
    // all have been admitted by defaults. Each is refused, or (once republished) held to the config.
    const outcomes = await Promise.allSettled([
      producer.enqueue(job(0, { priority: 'HIGH', request: { model: 'claude-nope', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJobInput>)),
      ...Array.from({ length: 6 }, (_, i) => producer.enqueue(job(i, { priority: 'HIGH', tenant: 'acme' }))),
    ]);
    const codes = outcomes.map((o) => (o.status === 'rejected' ? (o.reason as HeadroomError).code : 'ACCEPTED'));
    expect(codes[0]).not.toBe('ACCEPTED');
    expect(codes.slice(1).filter((c) => c === 'ACCEPTED').length).toBeLessThanOrEqual(2);
    for (const c of codes) expect(['ACCEPTED', 'FLEET_UNPUBLISHED', 'JOB_INVALID', 'QUOTA_EXCEEDED', 'QUEUE_FULL']).toContain(c);

    // The worker's upkeep publishes the settings again, with the configured values.
    await until(async () => (await admin.exists(k.settings)) === 1, 15_000, 'the settings to be published again');
    expect(await admin.hget(k.settings, 'cap')).toBe('3');
    expect(await admin.hget(k.settings, 'tenantMax:*')).toBe('2');
    await expect(producer.enqueue(job(9, { priority: 'HIGH', request: { model: 'claude-nope', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] } } as Partial<LlmJobInput>))).rejects.toMatchObject({ code: 'JOB_INVALID' });
  });

  it('refuses with FLEET_UNPUBLISHED (retryable) while only the models are lost, and the running worker publishes them again', async () => {
    // What a worker whose config served no model left behind when it started and stopped: the
    // settings, and no models. Admission used to refuse every job "unknown model" (JOB_INVALID,
    // not retryable) until a worker restarted.
    const { prefix, producer } = await fleet({});
    const k = laneKeys(prefix, 'high');
    await admin.del(k.models);
    await expect(producer.enqueue(job(0, { priority: 'HIGH' }))).rejects.toMatchObject({ code: 'FLEET_UNPUBLISHED', retryable: true });
    await until(async () => (await admin.hget(k.models, SONNET)) !== null, 15_000, 'the models to be published again');
    await expect(producer.enqueue(job(1, { priority: 'HIGH' }))).resolves.toMatchObject({ id: expect.stringMatching(/^high\./) });
  });
});
