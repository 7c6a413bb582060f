/**
 * SIGTERM: a worker stops taking jobs, lets in-flight calls finish within its grace period, and
 * hands back what is still running after it, so another worker completes it. Nothing is lost. A
 * stream already under way cannot be answered again: it fails, saying the shutdown cut it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobFailedError, Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { waitForFleet } from '../support/probes.js';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const MODEL = 'claude-haiku-4-5';
let redis: EmbeddedRedis;
let sim: Simulator;
const procs: FleetProcess[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  // Every call takes 2 s, so a SIGTERM lands while calls are in flight.
  sim = await startSimulator({ latencyMs: 2_000 });
});
afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  await sim.close();
  await redis.stop();
});

const job = (i: number): LlmJobInput => ({
  priority: 'NORMAL',
  provider: 'anthropic',
  request: { model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: `shutdown ${i}` }] },
});

function config(prefix: string, graceMs: number): string {
  return writeConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'SHUTDOWN_TEST_KEY' } },
    models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 400_000, otpm: 100_000 } } },
    dispatch: { concurrency: 8, shutdownGraceMs: graceMs, lockMs: 5_000, stalledIntervalMs: 1_000 },
  });
}

async function inFlight(producer: Producer, ids: string[]): Promise<number> {
  const infos = await Promise.all(ids.map((id) => producer.getJob(id)));
  return infos.filter((i) => i?.state === 'active').length;
}

async function until(cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('worker shutdown', () => {
  it('finishes in-flight calls on SIGTERM within the grace period, then exits 0', async () => {
    const cfg = config('sd1', 15_000);
    const worker = spawnWorker(cfg, redis.url, 'sd1-w', { SHUTDOWN_TEST_KEY: 'sk-shutdown', HEADROOM_LOG_LEVEL: 'info' });
    procs.push(worker);
    // Admission refuses until a worker has published the fleet's settings.
    await waitForFleet(redis.url, 'sd1', [worker]);
    const producer = new Producer({ redis: redis.url, prefix: 'sd1' });
    const handles = await Promise.all([1, 2, 3, 4].map((i) => producer.enqueue(job(i))));
    await until(async () => (await inFlight(producer, handles.map((h) => h.id))) === 4);
    worker.child.kill('SIGTERM');
    // Once the worker has begun to stop (however long a loaded machine takes to deliver the signal):
    await until(async () => worker.output().includes('worker stopping'));
    const extra = await producer.enqueue(job(99));
    expect(await worker.exited).toBe(0);
    const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 5_000 })));
    expect(results.map((r) => r.attempts)).toEqual([1, 1, 1, 1]);
    // The worker stopped taking jobs: the one enqueued after SIGTERM is still waiting.
    expect((await producer.getJob(extra.id))?.state).toBe('waiting');
    await producer.close();
  });

  it('hands calls still running after the grace period back to the fleet', async () => {
    const cfg = config('sd2', 300);
    const first = spawnWorker(cfg, redis.url, 'sd2-a', { SHUTDOWN_TEST_KEY: 'sk-shutdown' });
    procs.push(first);
    await waitForFleet(redis.url, 'sd2', [first]);
    const producer = new Producer({ redis: redis.url, prefix: 'sd2' });
    const handles = await Promise.all([1, 2, 3].map((i) => producer.enqueue(job(i))));
    await until(async () => (await inFlight(producer, handles.map((h) => h.id))) === 3);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    // Handed back, not stuck active until a lock expires.
    const states = await Promise.all(handles.map((h) => producer.getJob(h.id)));
    expect(states.map((s) => s?.state)).toEqual(['waiting', 'waiting', 'waiting']);
    const second = spawnWorker(cfg, redis.url, 'sd2-b', { SHUTDOWN_TEST_KEY: 'sk-shutdown' });
    procs.push(second);
    const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 20_000 })));
    expect(results).toHaveLength(3);
    await producer.close();
  });

  it("fails a stream past its first event that outlives the grace STREAM_FAILED, saying its worker's shutdown cut it: its caller's stream ends with that error", async () => {
    // 300 tokens 50 ms apart: the answer streams on long after the grace.
    const slow = await startSimulator({ latencyMs: 5, outputTokens: { min: 300, max: 300 } });
    slow.setPace({ streamTokenMs: 50 });
    const cfg = writeConfig({
      redis: { prefix: 'sd3' },
      providers: { anthropic: { baseURL: slow.url, apiKeyEnv: 'SHUTDOWN_TEST_KEY' } },
      models: { [MODEL]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 400_000, otpm: 100_000 } } },
      dispatch: { concurrency: 8, shutdownGraceMs: 300, lockMs: 5_000, stalledIntervalMs: 1_000 },
    });
    const worker = spawnWorker(cfg, redis.url, 'sd3-w', { SHUTDOWN_TEST_KEY: 'sk-shutdown' });
    procs.push(worker);
    const producer = new Producer({ redis: redis.url, prefix: 'sd3' });
    try {
      await waitForFleet(redis.url, 'sd3', [worker]);
      const stream = await producer.stream({ ...job(4), request: { ...job(4).request, max_tokens: 400, stream: true } } as LlmJobInput);
      const events: string[] = [];
      let raised: unknown;
      try {
        for await (const data of stream.raw()) {
          events.push(data);
          if (events.length === 5) worker.child.kill('SIGTERM');
        }
      } catch (err) {
        raised = err;
      }
      expect(await worker.exited).toBe(0);
      expect(raised).toBeInstanceOf(JobFailedError);
      const failure = (raised as JobFailedError).failure;
      expect(failure).toMatchObject({ code: 'STREAM_FAILED', streamCut: 'WORKER_SHUTDOWN', message: expect.stringContaining("cut by its worker's shutdown") });
      // The last event its caller read says so, in the provider's shape, not "the stream ended before its message_stop event".
      expect(JSON.parse(events.at(-1)!)).toEqual({ type: 'error', error: { type: 'api_error', message: `STREAM_FAILED: ${failure.message}` } });
      expect(events.length).toBeLessThan(300);
    } finally {
      await producer.close();
      await slow.close();
    }
  });
});
