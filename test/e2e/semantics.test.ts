/**
 * Scheduling semantics users expect (issue 18), each with real `headroom worker` processes, the
 * official SDKs inside them, and the simulator answering as the providers do:
 * - the config's fallback ladder serves a job that names none;
 * - a rate-limit 429 without `retry-after` waits for the reset headers, and only what the
 *   provider calls a spend cap or a billing error fails SPEND_CAP;
 * - a setting that must 429 is refused when the worker starts;
 * - `maxWaitMs` is a deadline in every lane, and `result()` can cancel the job it gave up on.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobFailedError, Producer, TimeoutError, type LlmJobInput } from '@headroom/producer-sdk';
import type { HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { sleep, waitForFleet } from '../support/probes.js';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const GPT = 'gpt-4.1';
const LIMITS = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
const KEY_ENV = 'SEMANTICS_TEST_KEY';
const KEY = { [KEY_ENV]: 'sk-semantics-test' };

let redis: EmbeddedRedis;
let sim: Simulator;
const procs: FleetProcess[] = [];
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  sim = await startSimulator({ latencyMs: 5 });
});
afterEach(async () => {
  await stopAll(procs.splice(0));
  for (const close of closers.splice(0).reverse()) await close();
  sim.clearFaults();
  sim.reset();
});
afterAll(async () => {
  await sim.close();
  await redis.stop();
});

/** One `headroom worker` process on `config` (merged over a two-model Anthropic fleet), and a producer. */
async function fleet(config: Partial<HeadroomConfigInput> = {}): Promise<{ producer: Producer; prefix: string }> {
  const prefix = `sem${randomUUID().slice(0, 6)}`;
  const file = writeConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV }, openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: KEY_ENV } },
    models: { [SONNET]: { provider: 'anthropic', limits: LIMITS }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    retry: { maxAttempts: 6, baseDelayMs: 50, maxDelayMs: 200 },
    ...config,
  });
  const worker = spawnWorker(file, redis.url, `${prefix}-w1`, KEY);
  procs.push(worker);
  await waitForFleet(redis.url, prefix, [worker]);
  const producer = new Producer({ redis: redis.url, prefix });
  closers.push(() => producer.close());
  return { producer, prefix };
}

const job = (model: string, extra: Partial<LlmJobInput> = {}): LlmJobInput =>
  ({ priority: 'HIGH', provider: 'anthropic', request: { model, max_tokens: 32, messages: [{ role: 'user', content: `hello ${randomUUID()}` }] }, ...extra }) as LlmJobInput;

const failureOf = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as Error);

describe('the config fallback ladder', () => {
  it("serves a job that names no fallback from its primary's configured fallback while the primary cools down", async () => {
    const { producer } = await fleet({
      models: { [SONNET]: { provider: 'anthropic', limits: LIMITS, fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    });
    // The primary is rate limited for a minute: waiting on it would outlast the test.
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 60 });
    const result = await producer.run(job(SONNET), { timeoutMs: 20_000 });
    expect(result.model).toBe(HAIKU);
    expect(result.attempts).toBe(2);
    expect(sim.stats().models[SONNET]?.faultsInjected['429']).toBe(1);
  });

  it('keeps a job that asks for no fallback (fallback: []) on its primary', async () => {
    const { producer } = await fleet({
      models: { [SONNET]: { provider: 'anthropic', limits: LIMITS, fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
    });
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 1 });
    const result = await producer.run(job(SONNET, { fallback: [] }), { timeoutMs: 20_000 });
    expect(result.model).toBe(SONNET);
    expect(sim.stats().models[HAIKU]?.admitted ?? 0).toBe(0);
  });
});
