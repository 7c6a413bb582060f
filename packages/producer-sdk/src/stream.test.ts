/**
 * `producer.stream()` against a real Redis: a plain BullMQ worker stands in for the fleet (which
 * is not this package's) and relays events the way the fleet's worker does, with the contract's
 * own relay script.
 */
import { randomUUID } from 'node:crypto';
import { getEventListeners } from 'node:events';
import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FailureCode, jobEventsKey, jobFailure, parseConfig, publishFleetSettings, relayEvents, type JobEvent, type LlmResult } from '@headroom/queue';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { standInWorker, waitUntil } from './fleet-stand-in.test-support.js';
import { ClosedError, JobFailedError, Producer, type LlmJobInput } from './index.js';

let redis: EmbeddedRedis;
let admin: Redis;
const open: { close(): Promise<unknown> }[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  admin.disconnect();
  await redis.stop();
});

/** A prefix whose fleet settings are published: admission fails closed without them. */
async function fleetPrefix(): Promise<string> {
  const prefix = `s${randomUUID().slice(0, 8)}`;
  await publishFleetSettings(admin, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic' }, 'gpt-4.1': { provider: 'openai' } } }));
  return prefix;
}

const job = (overrides: Partial<LlmJobInput> = {}): LlmJobInput =>
  ({ priority: 'HIGH', provider: 'anthropic', request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Hello' }] }, ...overrides }) as LlmJobInput;

const delta = (text: string) => JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } });

function result(): LlmResult {
  const now = Date.now();
  return {
    provider: 'anthropic',
    model: 'claude-sonnet-4-6',
    response: { type: 'message', content: [{ type: 'text', text: 'hi there' }] },
    usage: { inputTokens: 5, outputTokens: 2, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
    attempts: 1,
    streamed: true,
    timings: { enqueuedAt: now, startedAt: now, finishedAt: now, waitMs: 0, runMs: 0 },
    cost: { usd: 0, batch: false },
  };
}

/** Stands in for the fleet on the HIGH lane: relays `script(job)`'s events, then ends the job as it says. */
function fleet(prefix: string, script: (job: Job) => Promise<{ events: JobEvent[][]; fail?: string }>): void {
  const w = standInWorker(redis.url, prefix, 'high', async (j) => {
    const { events, fail } = await script(j);
    let first = true;
    for (const batch of events) {
      await relayEvents(admin, prefix, j.id!, batch, { first });
      first = false;
    }
    if (fail) throw new Error(fail);
    return result();
  });
  open.push(w);
}

const start: JobEvent = { kind: 'start', model: 'claude-sonnet-4-6', waitMs: 4, startedAt: 1 };

function producer(prefix: string): Producer {
  const p = new Producer({ redis: redis.url, prefix });
  open.push(p);
  return p;
}

/**
 * A stand-in worker whose job streams a long answer: it writes until the relay refuses (its
 * caller cancelled it), its first write `holdMs` after it took the job (a model slow to its first
 * output). `outcome` is the refusal, once it came.
 */
function writeUntilRefused(prefix: string, holdMs = 0): { outcome?: string } {
  const seen: { outcome?: string } = {};
  fleet(prefix, async (j) => {
    await new Promise((r) => setTimeout(r, holdMs));
    let batch: JobEvent[] = [start, { kind: 'event', data: delta('a') }];
    for (let first = true; ; first = false) {
      const outcome = await relayEvents(admin, prefix, j.id!, batch, { first });
      if (outcome === 'cancelled') {
        seen.outcome = outcome;
        break;
      }
      batch = [{ kind: 'event', data: delta('b') }];
      await new Promise((r) => setTimeout(r, 10));
    }
    return { events: [], fail: 'CANCELLED: cancelled by its caller' };
  });
  return seen;
}

describe('producer.stream', () => {
  it('yields the provider events in order, then the result, and leaves no stream behind', async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async () => ({ events: [[start, { kind: 'event', data: delta('hi') }], [{ kind: 'event', data: delta(' there') }, { kind: 'end' }]] }));
    const stream = await producer(prefix).stream(job());
    expect(await stream.started()).toEqual({ model: 'claude-sonnet-4-6', waitMs: 4, startedAt: 1 });
    const texts: string[] = [];
    for await (const event of stream) texts.push((event as { delta: { text: string } }).delta.text);
    expect(texts).toEqual(['hi', ' there']);
    expect((await stream.result()).streamed).toBe(true);
    await waitUntil(async () => (await admin.exists(jobEventsKey(prefix, stream.id))) === 0);
  });

  it('keeps a relay read to its end until its job has ended, for a rerun to complete the job from, then deletes it', async () => {
    const prefix = await fleetPrefix();
    let finish: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    // The worker relayed the whole answer but has not ended the job: as one whose lock lapsed
    // after the end, before its finish, whose rerun is still to come.
    fleet(prefix, async (j) => {
      await relayEvents(admin, prefix, j.id!, [start, { kind: 'event', data: delta('hi') }, { kind: 'end' }], { first: true });
      await finished;
      return { events: [] };
    });
    const stream = await producer(prefix).stream(job());
    const texts: string[] = [];
    for await (const event of stream) texts.push((event as { delta: { text: string } }).delta.text);
    expect(texts).toEqual(['hi']);
    const key = jobEventsKey(prefix, stream.id);
    expect(await admin.xlen(key)).toBe(3);
    // Its expiry still holds it to RELAY_TTL_MS after the worker's last write.
    expect(await admin.pttl(key)).toBeGreaterThan(0);
    finish();
    await stream.result();
    await waitUntil(async () => (await admin.exists(key)) === 0);
  });

  it('throws TIMEOUT, never ends as if whole, when the rest of a completed answer expired before the reader took it', async () => {
    const prefix = await fleetPrefix();
    const texts = Array.from({ length: 600 }, (_, i) => `t${i} `);
    fleet(prefix, async () => ({ events: [[start, ...texts.map((t): JobEvent => ({ kind: 'event', data: delta(t) }))], [{ kind: 'end' }]] }));
    const stream = await producer(prefix).stream(job());
    await stream.result();
    const read: string[] = [];
    let thrown: unknown;
    try {
      for await (const event of stream) {
        read.push((event as { delta: { text: string } }).delta.text);
        // The reader pauses past RELAY_TTL_MS: the events expire (here, at once).
        if (read.length === 2) await admin.del(jobEventsKey(prefix, stream.id));
      }
    } catch (err) {
      thrown = err;
    }
    expect(read.length).toBeLessThan(texts.length);
    expect(thrown).toMatchObject({ code: 'TIMEOUT', message: expect.stringContaining('result() holds its whole answer') });
    expect((await stream.result()).response).toBeDefined();
  });

  it('replays a finished stream to a repeat of its idempotency key, and streams its answer from its result once its events expired', async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async () => ({ events: [[start, { kind: 'event', data: delta('hi') }, { kind: 'end' }]] }));
    const first = await producer(prefix).stream(job({ idempotencyKey: 'stream-1' }));
    for await (const _ of first) void _;
    await first.result();
    const again = await producer(prefix).stream(job({ idempotencyKey: 'stream-1' }));
    expect(again.existing).toBe(true);
    const texts: string[] = [];
    for await (const event of again) texts.push((event as { delta: { text: string } }).delta.text);
    expect(texts).toEqual(['hi']);
    // Its events expire (RELAY_TTL_MS after the last): a later repeat is streamed the answer its result holds.
    await admin.del(jobEventsKey(prefix, first.id));
    const late = await producer(prefix).stream(job({ idempotencyKey: 'stream-1' }));
    const stored = await first.result();
    expect(await late.started()).toEqual({ model: stored.model, waitMs: stored.timings.waitMs, startedAt: stored.timings.startedAt });
    const events: { type: string; delta?: { text?: string } }[] = [];
    for await (const event of late) events.push(event as (typeof events)[number]);
    expect(events.map((e) => e.type)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(events[2]?.delta?.text).toBe('hi there');
    expect(await late.result()).toEqual(stored);
  });

  it("streams a coalesced join, served from the result cache after the job's events expired, the answer from its result", async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async () => ({ events: [[start, { kind: 'event', data: delta('hi there') }, { kind: 'end' }]] }));
    const cached = new Producer({ redis: redis.url, prefix, resultCacheTtlMs: 3_600_000 });
    open.push(cached);
    const first = await cached.stream(job({ coalesce: true }));
    for await (const _ of first) void _;
    const stored = await first.result();
    await admin.del(jobEventsKey(prefix, first.id));
    const join = await cached.stream(job({ coalesce: true }));
    expect(join).toMatchObject({ id: first.id, existing: true });
    const texts: string[] = [];
    for await (const event of join) {
      const e = event as { type: string; delta?: { text?: string } };
      if (e.type === 'content_block_delta') texts.push(e.delta?.text ?? '');
    }
    expect(texts).toEqual(['hi there']);
    expect(await join.result()).toEqual(stored);
  });

  it("keeps a failed job's error for a repeat of its idempotency key, with no events to read", async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async () => ({ events: [], fail: 'PROVIDER_REJECTED: 400 invalid_request_error: bad' }));
    const first = await producer(prefix).stream(job({ idempotencyKey: 'stream-failed' }));
    const failed = await first.started().catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(JobFailedError);
    const again = await producer(prefix).stream(job({ idempotencyKey: 'stream-failed' }));
    expect(again.existing).toBe(true);
    await expect(again.started()).rejects.toMatchObject({ code: 'JOB_FAILED', jobId: first.id, failureCode: (failed as JobFailedError).failureCode });
    await expect((async () => {
      for await (const _ of again.raw()) void _;
    })()).rejects.toBeInstanceOf(JobFailedError);
  });

  it('marks the job streamed for the worker', async () => {
    const prefix = await fleetPrefix();
    let seen: unknown;
    fleet(prefix, async (j) => {
      seen = (j.data as { request: { stream?: boolean } }).request.stream;
      return { events: [[start, { kind: 'end' }]] };
    });
    const stream = await producer(prefix).stream(job());
    for await (const _ of stream) void _;
    expect(seen).toBe(true);
  });

  it('throws the job error, from started() and the iteration, when the job failed before any event', async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async () => ({ events: [], fail: 'PROVIDER_REJECTED: 400 invalid_request_error: bad' }));
    const stream = await producer(prefix).stream(job());
    await expect(stream.started()).rejects.toBeInstanceOf(JobFailedError);
    await expect((async () => {
      for await (const _ of stream.raw()) void _;
    })()).rejects.toBeInstanceOf(JobFailedError);
  });

  it('ends with the relayed error event and throws STREAM_FAILED when the stream broke part-way', async () => {
    const prefix = await fleetPrefix();
    const failure = jobFailure(FailureCode.STREAM_FAILED, '529 overloaded_error: Overloaded (after 2 events had been streamed)', undefined, 529);
    const errorEvent = JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
    fleet(prefix, async () => ({ events: [[start, { kind: 'event', data: delta('par') }], [{ kind: 'error', data: errorEvent, failure }]], fail: 'STREAM_FAILED: ...' }));
    const stream = await producer(prefix).stream(job());
    const seen: string[] = [];
    const err = await (async () => {
      for await (const data of stream.raw()) seen.push(data);
    })().catch((e: unknown) => e);
    expect(seen).toEqual([delta('par'), errorEvent]);
    expect(err).toBeInstanceOf(JobFailedError);
    expect((err as JobFailedError).failure).toMatchObject({ code: 'STREAM_FAILED', status: 529 });
  });

  /**
   * A stand-in worker whose stream Redis loses after its first write (the reader has read it):
   * `rest` is written next, as an attempt's first write when `anew`. A refused write fails the
   * job as the fleet's worker does (`relayFailure`).
   */
  function loseRelayMidway(prefix: string, rest: JobEvent[], anew: boolean): { lost: () => void } {
    let lost: () => void = () => {};
    const gone = new Promise<void>((resolve) => {
      lost = resolve;
    });
    open.push(
      standInWorker(redis.url, prefix, 'high', async (j) => {
        await relayEvents(admin, prefix, j.id!, [start, { kind: 'event', data: delta('a') }], { first: true });
        await gone;
        const outcome = await relayEvents(admin, prefix, j.id!, rest, { first: anew });
        if (outcome !== 'written') throw new Error(`STREAM_FAILED: relay refused (${outcome})`);
        return result();
      }),
    );
    return { lost: () => lost() };
  }

  /** Reads a stream's raw events, deleting its relay key (as Redis losing it) once the first is read. */
  async function readLosingRelay(stream: Awaited<ReturnType<Producer['stream']>>, prefix: string, lost: () => void): Promise<{ seen: string[]; err: unknown }> {
    const seen: string[] = [];
    const err = await (async () => {
      for await (const data of stream.raw()) {
        seen.push(data);
        if (seen.length === 1) {
          await admin.del(jobEventsKey(prefix, stream.id));
          lost();
        }
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    return { seen, err };
  }

  it('fails, never ends cleanly or past a gap, when Redis loses the relay mid-stream: the next write is refused and the job fails', async () => {
    const prefix = await fleetPrefix();
    const { lost } = loseRelayMidway(prefix, [{ kind: 'event', data: delta('b') }, { kind: 'end' }], false);
    const stream = await producer(prefix).stream(job());
    const { seen, err } = await readLosingRelay(stream, prefix, lost);
    expect(err).toBeInstanceOf(JobFailedError);
    expect((err as JobFailedError).failure.message).toContain('relay refused (lost)');
    expect(seen.slice(0, -1)).toEqual([delta('a')]);
    expect(JSON.parse(seen.at(-1)!)).toMatchObject({ type: 'error' });
  });

  it('fails, never reads on past the gap, when a lost relay was made anew by an attempt\'s first write (a second start)', async () => {
    const prefix = await fleetPrefix();
    const { lost } = loseRelayMidway(prefix, [start, { kind: 'event', data: delta('c') }, { kind: 'end' }], true);
    const stream = await producer(prefix).stream(job());
    const { seen, err } = await readLosingRelay(stream, prefix, lost);
    expect(err).toBeInstanceOf(JobFailedError);
    expect((err as JobFailedError).failure).toMatchObject({ code: 'STREAM_FAILED', message: expect.stringContaining('was lost after 1 events') });
    expect(seen.slice(0, -1)).toEqual([delta('a')]);
    expect(JSON.parse(seen.at(-1)!)).toMatchObject({ type: 'error', error: { type: 'api_error' } });
  });

  it("makes the error event in the provider's shape when the job failed part-way without one", async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async () => ({ events: [[start, { kind: 'event', data: delta('par') }]], fail: 'a worker that died' }));
    const stream = await producer(prefix).stream(job());
    const seen: unknown[] = [];
    await expect((async () => {
      for await (const event of stream) seen.push(event);
    })()).rejects.toBeInstanceOf(JobFailedError);
    expect(seen.at(-1)).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringContaining('a worker that died') } });
  });

  it('cancels a job that has not started when the signal aborts, and nothing is left', async () => {
    const prefix = await fleetPrefix();
    const abort = new AbortController();
    const p = producer(prefix);
    const stream = await p.stream(job(), { signal: abort.signal });
    abort.abort();
    await expect((async () => {
      for await (const _ of stream) void _;
    })()).rejects.toMatchObject({ name: 'AbortError' });
    await expect.poll(async () => p.getJob(stream.id)).toBeNull();
  });

  it("ends a caller's stream DEADLINE_EXCEEDED when its job has not started within its maxWaitMs, while a caller sharing the job streams it all", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const ask = (maxWaitMs: number) => job({ coalesce: true, maxWaitMs, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'One answer, two deadlines' }] } } as never);
    const patient = await p.stream(ask(60_000));
    const hasty = await p.stream(ask(150));
    expect(hasty).toMatchObject({ id: patient.id, existing: true });
    await expect(hasty.started()).rejects.toMatchObject({ failureCode: 'DEADLINE_EXCEEDED' });
    // The fleet reaches the job after the hasty caller left: the events are the patient one's.
    fleet(prefix, async () => ({ events: [[start, { kind: 'event', data: delta('hi') }, { kind: 'end' }]] }));
    const seen: string[] = [];
    for await (const data of patient.raw()) seen.push(data);
    expect(seen).toEqual([delta('hi')]);
    const late: string[] = [];
    await expect((async () => {
      for await (const data of hasty.raw()) late.push(data);
    })()).rejects.toMatchObject({ failureCode: 'DEADLINE_EXCEEDED' });
    expect(late).toEqual([]);
  });

  it('asks a running job to stop when the signal aborts: the relay refuses its next write', async () => {
    const prefix = await fleetPrefix();
    const abort = new AbortController();
    const refused = writeUntilRefused(prefix);
    const stream = await producer(prefix).stream(job(), { signal: abort.signal });
    await stream.started();
    abort.abort();
    await expect.poll(() => refused.outcome).toBe('cancelled');
  });

  it('stops a running job when its caller leaves the iteration early (a break), as an abort does', async () => {
    const prefix = await fleetPrefix();
    const refused = writeUntilRefused(prefix);
    const stream = await producer(prefix).stream(job());
    for await (const _ of stream) break;
    await expect.poll(() => refused.outcome).toBe('cancelled');
  });

  it("throws CLOSED from an iteration still reading a finished answer when its producer closes, not the closed connection's own error", async () => {
    const prefix = await fleetPrefix();
    // Longer than one read's page: the rest is read after the job ended, a page at a time.
    const events: JobEvent[] = [start, ...Array.from({ length: 600 }, (_, i): JobEvent => ({ kind: 'event', data: delta(String(i)) })), { kind: 'end' }];
    fleet(prefix, async () => ({ events: [events] }));
    const p = new Producer({ redis: redis.url, prefix });
    const stream = await p.stream(job());
    await stream.result();
    let seen = 0;
    const err = await (async () => {
      for await (const _ of stream) if (++seen === 1) await p.close();
    })().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ClosedError);
    expect(seen).toBeLessThan(600);
  });

  it('lets go of the signal once the job ended: one signal given to many streams holds none of them', async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async () => ({ events: [[start, { kind: 'event', data: delta('hi') }, { kind: 'end' }]] }));
    const server = new AbortController();
    const p = producer(prefix);
    for (let i = 0; i < 3; i++) {
      const stream = await p.stream(job({ request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: `Hello ${i}` }] } } as Partial<LlmJobInput>), { signal: server.signal });
      for await (const _ of stream) void _;
      await stream.result();
    }
    expect(getEventListeners(server.signal, 'abort')).toHaveLength(0);
  });

  it("leaves a stream's job to run on when the caller's timeout passes, as result() does", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const stream = await p.stream(job(), { timeoutMs: 200 });
    await expect(stream.started()).rejects.toMatchObject({ code: 'TIMEOUT' });
    const err = await stream.result().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'TIMEOUT' });
    expect((err as { cancelled?: boolean }).cancelled).toBeUndefined();
    expect((await p.getJob(stream.id))?.state).toBe('waiting');
  });

  it('with cancelOnTimeout, removes a job not started when the timeout passes, and says so', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const stream = await p.stream(job(), { timeoutMs: 200, cancelOnTimeout: true });
    await expect((async () => {
      for await (const _ of stream) void _;
    })()).rejects.toMatchObject({ code: 'TIMEOUT', cancelled: true });
    expect(await p.getJob(stream.id)).toBeNull();
  });

  it('with cancelOnTimeout, stops a call its worker took when the stream has not started by the timeout, as an abort does', async () => {
    const prefix = await fleetPrefix();
    const refused = writeUntilRefused(prefix, 1_500);
    const p = producer(prefix);
    const stream = await p.stream(job(), { timeoutMs: 300, cancelOnTimeout: true });
    await expect(stream.started()).rejects.toMatchObject({ code: 'TIMEOUT', cancelled: true });
    await expect.poll(() => refused.outcome, { timeout: 10_000 }).toBe('cancelled');
  });

  it("reads a stream that started within the caller's timeout on past it, to its end", async () => {
    const prefix = await fleetPrefix();
    // Ten events 100 ms apart: the stream outlasts the 300 ms bound three times over.
    fleet(prefix, async (j) => {
      await relayEvents(admin, prefix, j.id!, [start], { first: true });
      for (let i = 0; i < 10; i += 1) {
        await new Promise((r) => setTimeout(r, 100));
        await relayEvents(admin, prefix, j.id!, [{ kind: 'event', data: delta(String(i)) }], { first: false });
      }
      await relayEvents(admin, prefix, j.id!, [{ kind: 'end' }], { first: false });
      return { events: [] };
    });
    const stream = await producer(prefix).stream(job(), { timeoutMs: 300 });
    const texts: string[] = [];
    for await (const event of stream) texts.push((event as { delta: { text: string } }).delta.text);
    expect(texts).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect((await stream.result()).usage.outputTokens).toBe(2);
  });

  it("counts a stream started when its first event is in Redis by the timeout, though its caller has not read it yet", async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async (j) => {
      await relayEvents(admin, prefix, j.id!, [start, { kind: 'event', data: delta('a') }], { first: true });
      await new Promise((r) => setTimeout(r, 1_500));
      await relayEvents(admin, prefix, j.id!, [{ kind: 'event', data: delta('b') }, { kind: 'end' }], { first: false });
      return { events: [] };
    });
    const stream = await producer(prefix).stream(job(), { timeoutMs: 500 });
    // The caller reads only after its bound: the start was in Redis by then.
    await new Promise((r) => setTimeout(r, 1_000));
    const texts: string[] = [];
    for await (const event of stream) texts.push((event as { delta: { text: string } }).delta.text);
    expect(texts).toEqual(['a', 'b']);
  });

  it('serves many streams of one lane at once on one blocking read, each to its end', async () => {
    const prefix = await fleetPrefix();
    fleet(prefix, async (j) => {
      const n = Number((j.data as { metadata: { n: number } }).metadata.n);
      const events: JobEvent[][] = [[start]];
      for (let i = 0; i < 20; i++) events.push([{ kind: 'event', data: delta(`${n}:${i}`) }]);
      events.push([{ kind: 'end' }]);
      return { events };
    });
    const p = producer(prefix);
    const streams = await Promise.all(Array.from({ length: 30 }, (_, n) => p.stream(job({ metadata: { n } }))));
    const texts = await Promise.all(
      streams.map(async (s) => {
        const out: string[] = [];
        for await (const e of s) out.push((e as { delta: { text: string } }).delta.text);
        return out;
      }),
    );
    for (const [n, t] of texts.entries()) expect(t).toEqual(Array.from({ length: 20 }, (_, i) => `${n}:${i}`));
  });
});
