/**
 * Order inside a lane (issue 18, items 5 and 6), with a real `headroom worker` process, the
 * official SDK inside it and the simulator answering as Anthropic does:
 * - one tenant's backlog does not hold up another tenant's later jobs (fair sharing by tokens);
 * - jobs told to wait for the bucket at once come back in their enqueue order.
 * Jobs are enqueued before the worker starts, so the order of calls is the lane's order, whatever
 * the machine's load; each job's call start is `enqueuedAt + waitMs` from its result.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Producer, type JobHandle, type LlmJobInput, type LlmResult } from '@headroom/producer-sdk';
import { parseConfig, publishFleetSettings, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { waitForFleet } from '../support/probes.js';

const SONNET = 'claude-sonnet-4-6';
/** The simulator's limits and the fleet's: the bucket, not the provider, is what makes jobs wait. */
const LIMITS = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
const KEY_ENV = 'FAIRNESS_TEST_KEY';
const KEY = { [KEY_ENV]: 'sk-fairness-test' };

let redis: EmbeddedRedis;
let sim: Simulator;
const procs: FleetProcess[] = [];
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  sim = await startSimulator({ models: { [SONNET]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: 5 });
});
afterEach(async () => {
  await stopAll(procs.splice(0));
  for (const close of closers.splice(0).reverse()) await close();
  sim.reset();
});
afterAll(async () => {
  await sim.close();
  await redis.stop();
});

/**
 * A fleet's settings published (as a worker would) so jobs can be enqueued before any worker
 * runs; `start()` then spawns one `headroom worker` on the same config.
 */
async function fleet(config: Partial<HeadroomConfigInput>): Promise<{ producer: Producer; start: () => Promise<void> }> {
  const prefix = `fair${randomUUID().slice(0, 6)}`;
  const input: HeadroomConfigInput = {
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV } },
    models: { [SONNET]: { provider: 'anthropic', limits: LIMITS } },
    ...config,
  };
  const admin = new Redis(redis.url);
  closers.push(async () => admin.disconnect());
  await publishFleetSettings(admin, parseConfig(input));
  const producer = new Producer({ redis: redis.url, prefix });
  closers.push(() => producer.close());
  const file = writeConfig(input);
  return {
    producer,
    start: async () => {
      const worker = spawnWorker(file, redis.url, `${prefix}-w1`, KEY);
      procs.push(worker);
      await waitForFleet(redis.url, prefix, [worker]);
    },
  };
}

const job = (tenant: string, maxTokens: number): LlmJobInput =>
  ({ priority: 'NORMAL', provider: 'anthropic', tenant, request: { model: SONNET, max_tokens: maxTokens, messages: [{ role: 'user', content: `hello ${randomUUID()}` }] } }) as LlmJobInput;

/** When the job's (last) provider call started, from its result. */
const callStart = (r: LlmResult) => r.timings.enqueuedAt + r.timings.waitMs;

async function results(handles: JobHandle[]): Promise<LlmResult[]> {
  return Promise.all(handles.map((h) => h.result({ timeoutMs: 60_000 })));
}

describe('fair sharing inside a lane', () => {
  it("serves a tenant's later jobs long before another tenant's backlog in the same lane drains", async () => {
    const { producer, start } = await fleet({ dispatch: { concurrency: 1 } });
    // A floods NORMAL with 40 jobs; B's 4 come after all of them.
    const a: JobHandle[] = [];
    for (let i = 0; i < 40; i++) a.push(await producer.enqueue(job('tenant-a', 200)));
    const b: JobHandle[] = [];
    for (let i = 0; i < 4; i++) b.push(await producer.enqueue(job('tenant-b', 200)));
    await start();
    const [ra, rb] = [await results(a), await results(b)];
    const calls = [...ra.map((r) => ({ t: 'a', at: callStart(r) })), ...rb.map((r) => ({ t: 'b', at: callStart(r) }))].sort((x, y) => x.at - y.at);
    const lastB = Math.max(...rb.map(callStart));
    // FIFO would call all 40 of A's first. By tokens, B's 4 go with A's first ~4 rounds (~4 jobs each).
    expect(ra.filter((r) => callStart(r) > lastB).length).toBeGreaterThanOrEqual(20);
    // A's own jobs keep their enqueue order.
    for (let i = 1; i < ra.length; i++) expect(callStart(ra[i]!)).toBeGreaterThanOrEqual(callStart(ra[i - 1]!));
    expect(calls).toHaveLength(44);
  });
});

describe('order within a lane and pool', () => {
  it('serves jobs told to wait for the bucket at once in their enqueue order, not the order their requeues ran', async () => {
    // 120 requests/min with a 1 s burst: the bucket holds 2 requests. Four slots take four jobs at
    // once; two are told to wait, go back, and must come back in their own order.
    const { producer, start } = await fleet({
      models: { [SONNET]: { provider: 'anthropic', limits: { ...LIMITS, rpm: 120, burst: 1 } } },
      dispatch: { concurrency: 4 },
    });
    const handles: JobHandle[] = [];
    for (let i = 0; i < 10; i++) handles.push(await producer.enqueue(job('tenant-a', 50)));
    await start();
    const rs = await results(handles);
    // Some waited on the bucket (the mechanism under test ran) ...
    expect(rs.some((r) => r.timings.waitMs >= 400)).toBe(true);
    // ... and the calls went out in enqueue order.
    for (let i = 1; i < rs.length; i++) expect(callStart(rs[i]!), `job ${i}`).toBeGreaterThanOrEqual(callStart(rs[i - 1]!));
  });
});
