/**
 * The producer's stream bounds, with a real `headroom worker` child, a redis-server of this file's
 * own and the official SDK against the simulator (paced streams, `stall` faults):
 *
 * - the caller's `timeoutMs` bounds the wait for the stream to start, not the stream: a stream that
 *   outlasts it and keeps producing is read to its end (it was cut TIMEOUT mid-answer);
 * - once started, the worker bounds it: a provider that stalls mid-stream is cut at the worker's
 *   `streamIdleMs`, and the caller's stream ends with that failure;
 * - a worker that dies mid-stream (SIGKILL, the only worker: no rerun ends the job) ends the
 *   caller's stream STREAM_FAILED (`streamCut: WORKER_LOST`) once its heartbeat is gone, instead of
 *   hanging until the caller's bound (it was 10 minutes by default).
 */
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { JobFailedError, Producer, StreamCut, type JobStream, type LlmJobInput } from '@headroom/producer-sdk';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { until, waitForFleet } from '../support/probes.js';

const HAIKU = 'claude-haiku-4-5';
const LIMITS = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
const KEY_ENV = 'STREAM_BOUNDS_TEST_ANTHROPIC_KEY';
/** The worker's silence bound after the first output: small, so a stalled provider is cut soon. */
const STREAM_IDLE_MS = 2_000;

let sim: Simulator | undefined;
let redis: EmbeddedRedis | undefined;
const procs: FleetProcess[] = [];
const producers: Producer[] = [];

afterEach(async () => {
  await stopAll(procs.splice(0), 'SIGKILL');
  for (const p of producers.splice(0)) await p.close();
  await sim?.close();
  sim = undefined;
  if (redis) {
    await redis.stop({ kill: true });
    rmSync(redis.dir, { recursive: true, force: true });
    redis = undefined;
  }
});

/** One worker on this file's Redis and simulator, streaming `outputTokens` tokens `tokenMs` apart; and a producer. */
async function setUp(outputTokens: number, tokenMs: number): Promise<{ producer: Producer; worker: FleetProcess }> {
  redis = await startEmbeddedRedis({ port: 17_800 + (process.pid % 100) });
  sim = await startSimulator({ models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: 5, outputTokens: { min: outputTokens, max: outputTokens } });
  sim.setPace({ streamTokenMs: tokenMs });
  const prefix = 'bounds';
  const config = writeConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: KEY_ENV, streamIdleMs: STREAM_IDLE_MS } },
    models: { [HAIKU]: { provider: 'anthropic', limits: LIMITS } },
  });
  const worker = spawnWorker(config, redis.url, `${prefix}-w1`, { [KEY_ENV]: 'sk-stream-bounds' });
  procs.push(worker);
  await waitForFleet(redis.url, prefix, [worker]);
  const producer = new Producer({ redis: redis.url, prefix });
  producers.push(producer);
  return { producer, worker };
}

const job = (maxTokens: number): LlmJobInput => ({
  priority: 'HIGH',
  provider: 'anthropic',
  request: { model: HAIKU, max_tokens: maxTokens, messages: [{ role: 'user', content: 'A long story, please.' }] },
});

/** How a stream's reading ended: its event types, and the error it threw (undefined: it ended cleanly). */
async function readAll(stream: JobStream, onEvent: (n: number) => void = () => {}): Promise<{ types: string[]; error: unknown }> {
  const types: string[] = [];
  try {
    for await (const event of stream) {
      types.push((event as { type: string }).type);
      onEvent(types.length);
    }
    return { types, error: undefined };
  } catch (error) {
    return { types, error };
  }
}

describe("the producer's stream bounds", () => {
  it("reads a stream that outlasts the caller's timeoutMs to its end while it keeps producing", async () => {
    // 200 tokens 100 ms apart: at least 20 s of answer (the pace only ever slows it), twice the caller's 10 s bound.
    const { producer } = await setUp(200, 100);
    const stream = await producer.stream(job(300), { timeoutMs: 10_000 });
    const { types, error } = await readAll(stream);
    expect(error).toBeUndefined();
    expect(types.at(-1)).toBe('message_stop');
    const result = await stream.result();
    expect(result.usage.outputTokens).toBe(200);
  });

  it("ends a stream whose provider stalls mid-way at the worker's streamIdleMs, with the worker's failure", async () => {
    const { producer } = await setUp(300, 20);
    sim!.injectFaults({ model: HAIKU, stall: true, count: 1 });
    const stream = await producer.stream(job(400), { timeoutMs: 30_000 });
    const { types, error } = await readAll(stream);
    expect(types.length).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(JobFailedError);
    expect((error as JobFailedError).failureCode).toBe('STREAM_FAILED');
    expect((error as JobFailedError).reason).toContain('streamIdleMs');
    expect((error as JobFailedError).failure.streamCut).toBeUndefined();
  });

  it('ends a stream whose only worker is SIGKILLed mid-way STREAM_FAILED (WORKER_LOST) once its heartbeat is gone, not at the caller bound', async () => {
    // 600 tokens 200 ms apart: two minutes of answer, far past the test's wait.
    const { producer, worker } = await setUp(600, 200);
    // The caller's bound (to start) is long: only the guard can end this stream within the test.
    const stream = await producer.stream(job(700), { timeoutMs: 600_000 });
    let killed = false;
    const read = readAll(stream, (n) => {
      if (n === 5 && !killed) {
        killed = true;
        worker.child.kill('SIGKILL');
      }
    });
    await until(() => killed, 60_000, 'five events read');
    await worker.exited;
    // The guard ends it some 15-25 s after the worker's last beat; a hang shows as 'still reading'.
    const outcome = await Promise.race([read, new Promise<'still reading'>((r) => setTimeout(() => r('still reading'), 90_000))]);
    expect(outcome).not.toBe('still reading');
    const { types, error } = outcome as Awaited<typeof read>;
    expect(error).toBeInstanceOf(JobFailedError);
    expect((error as JobFailedError).failureCode).toBe('STREAM_FAILED');
    expect((error as JobFailedError).failure.streamCut).toBe(StreamCut.WORKER_LOST);
    expect((error as JobFailedError).reason).toContain('its worker bounds-w1');
    // The stream ended with an error event in the provider's shape, as a worker's own failure does.
    expect(types.at(-1)).toBe('error');
    await expect(stream.result()).rejects.toMatchObject({ failureCode: 'STREAM_FAILED' });
  });
});
