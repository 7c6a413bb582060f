/**
 * Each retry rule, end to end: the real SDKs inside a worker, the simulator injecting the fault.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobFailedError, Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { Redis } from 'ioredis';
import { Bucket, parseConfig, throttleParamsOf, type HeadroomConfigInput, createLogger } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startWorker, type RunningWorker } from '@headroom/worker';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const ENV = { RETRY_TEST_KEY: 'sk-retry-test' };
/** The fleet's default throttle, to read a model's as the dashboard does. */
const THROTTLE = throttleParamsOf(parseConfig({ models: { m: { provider: 'anthropic' } } }));

let redis: EmbeddedRedis;
let sim: Simulator;
const running: { close(): Promise<unknown> }[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  sim = await startSimulator({ latencyMs: 5 });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
  sim.clearFaults();
  sim.reset();
});
afterAll(async () => {
  await sim.close();
  await redis.stop();
});

async function fleet(overrides: Partial<HeadroomConfigInput> = {}): Promise<{ producer: Producer; worker: RunningWorker; prefix: string }> {
  const prefix = `r${randomUUID().slice(0, 8)}`;
  const config = parseConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'RETRY_TEST_KEY' } },
    models: {
      [SONNET]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 400_000, otpm: 100_000 }, fallback: [HAIKU] },
      [HAIKU]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 400_000, otpm: 100_000 } },
    },
    retry: { maxAttempts: 4, baseDelayMs: 50, maxDelayMs: 200 },
    ...overrides,
  });
  const worker = await startWorker({ config, redisUrl: redis.url, env: ENV, logger: silentLogger() });
  const producer = new Producer({ redis: redis.url, prefix });
  running.push(producer, worker);
  return { producer, worker, prefix };
}

function silentLogger() {
  // Real pino, writing nowhere: the tests read outcomes, not log lines.
  return createLogger({ level: 'silent' });
}

const job = (model = SONNET, extra: Partial<LlmJobInput> = {}): LlmJobInput =>
  ({ priority: 'HIGH', provider: 'anthropic', request: { model, max_tokens: 32, messages: [{ role: 'user', content: `hello ${randomUUID()}` }] }, ...extra }) as LlmJobInput;

describe('retry rules with the real SDKs', () => {
  it('honours a 429 retry-after exactly and cools the model down', async () => {
    const { producer } = await fleet();
    sim.injectFaults({ model: HAIKU, status: 429, count: 1, retryAfterSeconds: 1 });
    const started = Date.now();
    const result = await producer.run(job(HAIKU), { timeoutMs: 20_000 });
    expect(result.model).toBe(HAIKU);
    expect(result.attempts).toBe(2);
    // The second call waited out the provider's retry-after (1 s), no more than needed plus dispatch.
    expect(result.timings.finishedAt - started).toBeGreaterThanOrEqual(1_000);
    expect(sim.stats().models[HAIKU]?.faultsInjected['429']).toBe(1);
  });

  it('falls back to the next model when the primary answers 429', async () => {
    const { producer } = await fleet();
    sim.injectFaults({ model: SONNET, status: 429, count: 1, retryAfterSeconds: 30 });
    const result = await producer.run(job(SONNET, { fallback: [HAIKU] }), { timeoutMs: 20_000 });
    expect(result.model).toBe(HAIKU);
    expect(result.attempts).toBe(2);
  });

  it('opens the throttle in a 529 storm (probes only) and serves the fallback model', async () => {
    const { producer, prefix } = await fleet();
    sim.injectFaults({ model: SONNET, status: 529, count: 1000 });
    const first = await Promise.all(Array.from({ length: 10 }, () => producer.run(job(SONNET, { fallback: [HAIKU] }), { timeoutMs: 30_000 })));
    // Once the fleet has seen the primary fail, its throttle is open: later jobs go straight to the
    // fallback, and the primary gets one probe a second at most.
    const before = sim.stats().models[SONNET]?.faultsInjected['529'] ?? 0;
    const startedAt = Date.now();
    const later = await Promise.all(Array.from({ length: 30 }, () => producer.run(job(SONNET, { fallback: [HAIKU] }), { timeoutMs: 30_000 })));
    const seconds = (Date.now() - startedAt) / 1000;
    expect([...first, ...later].every((r) => r.model === HAIKU)).toBe(true);
    const storm = sim.stats().models[SONNET]?.faultsInjected['529'] ?? 0;
    expect(before).toBeGreaterThanOrEqual(2);
    expect(before).toBeLessThanOrEqual(10);
    expect(storm - before).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    const conn = new Redis(redis.url);
    try {
      const [t] = await new Bucket(conn, { prefix, throttle: THROTTLE }).throttles(SONNET, { rpm: 1000 }, [SONNET]);
      expect(t).toMatchObject({ state: 'open', successRatio: 0 });
    } finally {
      conn.disconnect();
    }
  });

  it('retries a 500 with backoff and succeeds', async () => {
    const { producer } = await fleet();
    sim.injectFaults({ model: HAIKU, status: 500, count: 2 });
    const result = await producer.run(job(HAIKU), { timeoutMs: 20_000 });
    expect(result.attempts).toBe(3);
    expect(result.model).toBe(HAIKU);
  });

  it('retries malformed JSON and cut connections', async () => {
    const { producer } = await fleet();
    sim.injectFaults([{ model: HAIKU, malformed: true, count: 1 }, { model: HAIKU, cut: true, count: 1 }]);
    const result = await producer.run(job(HAIKU), { timeoutMs: 20_000 });
    expect(result.attempts).toBe(3);
  });

  it("runs a streamed job again on a repeat of its key sent the moment its caller reads STREAM_FAILED, and streams the rerun's answer", async () => {
    const { producer } = await fleet();
    sim.setPace({ streamTokenMs: 2 });
    try {
      sim.injectFaults({ model: HAIKU, cut: true, count: 1 });
      const keyed = job(HAIKU, { idempotencyKey: `cut-${randomUUID()}`, fallback: [], request: { model: HAIKU, max_tokens: 200, stream: true, messages: [{ role: 'user', content: 'a long story' }] } } as Partial<LlmJobInput>);
      const first = await producer.stream(keyed);
      const seen: unknown[] = [];
      const failed = await (async () => {
        for await (const event of first) seen.push(event);
      })().catch((err: unknown) => err);
      expect(failed).toMatchObject({ failureCode: 'STREAM_FAILED' });
      expect(seen.length).toBeGreaterThan(1);
      // At once: the caller saw the failure, so the job has failed, and a failed keyed job runs again.
      const again = await producer.stream(keyed);
      const events: { type?: string }[] = [];
      for await (const event of again) events.push(event as { type?: string });
      expect(events.at(-1)?.type).toBe('message_stop');
      expect(await again.result()).toMatchObject({ model: HAIKU, attempts: 1 });
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it('fails a 400 at once with the provider message, without retrying', async () => {
    const { producer } = await fleet();
    const before = sim.stats().requestsByPath['POST /v1/messages'] ?? 0;
    // 80,000 output tokens fit the pool's 100,000 OTPM (so the bucket grants the call) but not
    // the model's 64,000 ceiling, which the provider enforces with a 400.
    const run = producer.run(job(HAIKU, { request: { model: HAIKU, max_tokens: 80_000, messages: [{ role: 'user', content: 'hi' }] } } as Partial<LlmJobInput>), { timeoutMs: 20_000 });
    await expect(run).rejects.toBeInstanceOf(JobFailedError);
    const err = (await run.catch((e: unknown) => e)) as JobFailedError;
    expect(err.failureCode).toBe('PROVIDER_REJECTED');
    expect(err.reason).toContain('400 invalid_request_error: max_tokens');
    expect((sim.stats().requestsByPath['POST /v1/messages'] ?? 0) - before).toBe(1);
  });

  it('fails when retries are exhausted, naming the last failure', async () => {
    const { producer } = await fleet({ retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 50 } });
    sim.injectFaults({ model: HAIKU, status: 503, count: 100 });
    const err = (await producer.run(job(HAIKU), { timeoutMs: 20_000 }).catch((e: unknown) => e)) as JobFailedError;
    expect(err).toBeInstanceOf(JobFailedError);
    expect(err.failureCode).toBe('RETRIES_EXHAUSTED');
    expect(err.reason).toMatch(/after 3 attempts, last: 503 /);
  });
});
