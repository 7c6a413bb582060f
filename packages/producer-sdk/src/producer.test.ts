import { randomUUID } from 'node:crypto';
import { Queue, Worker, type Job, type WorkerOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { answeredFailure, createRedis, FailureCode, failureText, finishJob, handOffJobId, idempotentJobId, jobFailure, laneKeys, parkBatchJobs, parseConfig, providerErrorOf, publishFleetSettings, type HeadroomConfigInput, type LaneKeys, type LlmResult } from '@headroom/queue';
import {
  ClosedError,
  JobFailedError,
  JobNotFoundError,
  JobValidationError,
  Producer,
  QueueFullError,
  RedisOomError,
  RedisUnavailableError,
  ShedError,
  TimeoutError,
  type LlmJobInput,
} from './index.js';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { standInWorker, waitUntil, type StandInWorker } from './fleet-stand-in.test-support.js';

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

const job = (overrides: Partial<LlmJobInput> = {}): LlmJobInput =>
  ({
    priority: 'CRITICAL',
    provider: 'anthropic',
    request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Hello' }] },
    ...overrides,
  }) as LlmJobInput;

/** A coalesced HIGH job asking `content`, with a start deadline of its own. */
const coalescedHigh = (content: string, maxWaitMs: number): LlmJobInput =>
  job({ priority: 'HIGH', coalesce: true, maxWaitMs, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content }] } } as never);

/** A prefix of its own with a fleet's settings published on it, as a running fleet keeps them. */
async function fleetPrefix(prefix = `t${randomUUID().slice(0, 8)}`, on: Redis = admin, extra: Partial<HeadroomConfigInput> = {}): Promise<string> {
  await publishFleetSettings(
    on,
    parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic' }, 'claude-haiku-4-5': { provider: 'anthropic' }, 'gpt-4.1': { provider: 'openai' } }, ...extra }),
  );
  return prefix;
}

/** Jobs waiting in a lane: BullMQ's wait list and its prioritized set (where a fair lane keeps them). */
async function waiting(on: Redis, k: LaneKeys): Promise<number> {
  return (await on.llen(k.wait)) + (await on.zcard(k.prioritized));
}

/** The ids of the jobs waiting in a lane, in the order BullMQ takes them. */
async function waitingIds(on: Redis, k: LaneKeys): Promise<string[]> {
  return [...(await on.lrange(k.wait, 0, -1)).reverse(), ...(await on.zrange(k.prioritized, '0', '-1'))];
}

function producer(prefix: string): Producer {
  const p = new Producer({ redis: redis.url, prefix });
  open.push(p);
  return p;
}

async function keysUnder(prefix: string): Promise<string[]> {
  return admin.keys(`{${prefix}:*`);
}

function fakeResult(model: string): LlmResult {
  const now = Date.now();
  return {
    provider: 'anthropic',
    model,
    response: { id: 'msg_1', content: [{ type: 'text', text: 'hi' }] },
    usage: { inputTokens: 5, outputTokens: 2, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
    attempts: 1,
    timings: { enqueuedAt: now, startedAt: now, finishedAt: now, waitMs: 0, runMs: 0 },
    cost: { usd: 0.00001, batch: false },
  };
}

/** The fleet's stand-in on one lane (fleet-stand-in.test-support.ts). */
function plainWorker(prefix: string, lane: 'critical' | 'high', processor: (job: Job) => unknown, opts: Partial<WorkerOptions> = {}): StandInWorker {
  const w = standInWorker(redis.url, prefix, lane, processor, opts);
  open.push(w);
  return w;
}

/** A producer on a Redis of its own, published to as a fleet would: for tests that kill that Redis. */
async function producerOnItsOwnRedis(): Promise<{ own: EmbeddedRedis; p: Producer }> {
  const own = await startEmbeddedRedis();
  const ownAdmin = new Redis(own.url);
  await fleetPrefix('hr', ownAdmin);
  ownAdmin.disconnect();
  return { own, p: new Producer({ redis: own.url }) };
}

describe('Producer', () => {
  it('refuses malformed jobs with their paths and writes nothing to Redis', async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const p = producer(prefix);
    const bad: unknown[] = [
      job({ priority: 'URGENT' as never }),
      job({ request: { model: 'x', max_tokens: 0, messages: [{ role: 'user', content: 'a' }] } } as never),
      job({ request: { model: 'x', max_tokens: 5, messages: [] } } as never),
      { ...job(), provider: 'gemini' },
      job({ tenant: 'no spaces allowed' }),
    ];
    for (const input of bad) {
      await expect(p.enqueue(input as LlmJobInput)).rejects.toBeInstanceOf(JobValidationError);
    }
    await expect(p.enqueue(job({ request: { model: 'x', max_tokens: 5, messages: [{ role: 'user', content: 'x'.repeat(2_000_000) }] } } as never)))
      .rejects.toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
    expect(await keysUnder(prefix)).toEqual([]);
  });

  it('gives exactly `cap` acceptances to 50 concurrent producers racing 2x the cap', async () => {
    const prefix = await fleetPrefix();
    // A connection each, as 50 services would have: producers built from one URL in one process
    // share theirs, and their enqueues would reach Redis as a few batches, not a race.
    // Fifty connections made at once take longer than the producer's 2 s default on a loaded
    // machine (seen at a load average of 33: two enqueues refused REDIS_UNAVAILABLE): this test
    // is about the cap, so the connections get all the time they need.
    const producers = Array.from({ length: 50 }, () => {
      const connection = createRedis(redis.url, 'producer', { connectTimeout: 60_000 });
      open.push({ close: async () => connection.disconnect() });
      const p = new Producer({ redis: connection, prefix, connectTimeoutMs: 60_000 });
      open.push(p);
      return p;
    });
    // CRITICAL's default cap is 50: 100 attempts from 50 producers, two each, all at once.
    const outcomes = await Promise.allSettled(producers.flatMap((p) => [p.enqueue(job()), p.enqueue(job())]));
    const accepted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(accepted).toHaveLength(50);
    expect(refused).toHaveLength(50);
    for (const r of refused) {
      expect(r.reason).toBeInstanceOf(QueueFullError);
      expect(r.reason).toMatchObject({ code: 'QUEUE_FULL', lane: 'critical', cap: 50 });
    }
    expect(await waiting(admin, laneKeys(prefix, 'critical'))).toBe(50);
  });

  it('honours the cap the fleet published, and frees the slot when a job starts', async () => {
    const prefix = await fleetPrefix();
    await publishFleetSettings(admin, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic' } }, lanes: { high: { cap: 3 } } }));
    const p = producer(prefix);
    for (let i = 0; i < 3; i++) await p.enqueue(job({ priority: 'HIGH' }));
    await expect(p.enqueue(job({ priority: 'HIGH' }))).rejects.toMatchObject({ code: 'QUEUE_FULL', cap: 3 });

    // Take one job the way the fleet does (manual fetch): it is now active, no longer queued.
    const k = laneKeys(prefix, 'high');
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    const started = await w.getNextJob('token-1', { block: false });
    expect(started).toBeDefined();
    await expect(p.enqueue(job({ priority: 'HIGH' }))).resolves.toMatchObject({ lane: 'high' });
    await expect(p.enqueue(job({ priority: 'HIGH' }))).rejects.toBeInstanceOf(QueueFullError);
  });

  it('refuses models the fleet does not serve, and a model of the other provider', async () => {
    const prefix = await fleetPrefix();
    await publishFleetSettings(admin, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic' }, 'gpt-4.1': { provider: 'openai' } } }));
    const p = producer(prefix);
    const before = await waiting(admin, laneKeys(prefix, 'critical'));
    await expect(p.enqueue(job({ fallback: ['claude-opus-9'] }))).rejects.toMatchObject({
      code: 'JOB_INVALID',
      issues: [{ path: 'fallback', message: expect.stringMatching(/unknown model "claude-opus-9"/) }],
    });
    await expect(p.enqueue(job({ request: { model: 'gpt-4.1', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] } } as never))).rejects.toMatchObject({
      issues: [{ path: 'request.model', message: '"gpt-4.1" is an openai model, not anthropic' }],
    });
    expect(await waiting(admin, laneKeys(prefix, 'critical'))).toBe(before);

    // A fleet of the first version published a bare provider per model (no pool): still read right.
    await admin.hset(laneKeys(prefix, 'critical').models, 'claude-sonnet-4-6', 'anthropic', 'gpt-4.1', 'openai');
    await expect(p.enqueue(job())).resolves.toMatchObject({ lane: 'critical' });
    await expect(p.enqueue(job({ request: { model: 'gpt-4.1', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] } } as never))).rejects.toMatchObject({
      issues: [{ path: 'request.model', message: '"gpt-4.1" is an openai model, not anthropic' }],
    });
  });

  it('returns the same job for a repeated idempotency key', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const first = await p.enqueue(job({ idempotencyKey: 'order-42' }));
    const again = await p.enqueue(job({ idempotencyKey: 'order-42' }));
    const racing = await Promise.all(Array.from({ length: 10 }, () => producer(prefix).enqueue(job({ idempotencyKey: 'order-43' }))));
    expect(again.id).toBe(first.id);
    expect(first.existing).toBe(false);
    expect(again.existing).toBe(true);
    expect(new Set(racing.map((h) => h.id)).size).toBe(1);
    expect(await waiting(admin, laneKeys(prefix, 'critical'))).toBe(2);
  });

  it("takes a repeat of an idempotency key with its own maxWaitMs as the same job, its deadline the caller's own", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const k = laneKeys(prefix, 'critical');
    const first = await p.enqueue(job({ idempotencyKey: 'order-45', maxWaitMs: 3_000 }));
    // A retry that waits longer (the gateway's headroom-max-wait-ms, say), one that waits less, one with none.
    for (const maxWaitMs of [20_000, 1_000, undefined]) {
      const again = await p.enqueue(job({ idempotencyKey: 'order-45', ...(maxWaitMs === undefined ? {} : { maxWaitMs }) }));
      expect(again).toMatchObject({ id: first.id, existing: true });
    }
    // The job waits for the latest deadline its callers want: none, once one set none.
    expect(await admin.hget(`${k.jobKeyPrefix}${first.id}`, 'hrMaxWait')).toBeNull();
    expect(await waiting(admin, k)).toBe(1);
    // Another request under the key is still refused, whatever its deadline.
    const other = job({ idempotencyKey: 'order-45', maxWaitMs: 3_000, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Something else' }] } });
    await expect(p.enqueue(other)).rejects.toMatchObject({ code: 'JOB_INVALID' });
  });

  it("refuses an idempotency key repeated with a different job, rather than answer it with the first job's result", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const first = await p.enqueue(job({ idempotencyKey: 'order-44' }));
    const other = job({ idempotencyKey: 'order-44', request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Something else' }] } });
    await expect(p.enqueue(other)).rejects.toMatchObject({
      code: 'JOB_INVALID',
      issues: [{ path: 'idempotencyKey', message: expect.stringContaining(`already names job ${first.id}, which holds a different job`) }],
    });
    // The same job again is still the first one, and nothing else was enqueued.
    expect((await p.enqueue(job({ idempotencyKey: 'order-44' }))).id).toBe(first.id);
    expect(await waiting(admin, laneKeys(prefix, 'critical'))).toBe(1);
  });

  it('a key whose request coalesced into another job: a repeat with another job names the job it joined; one while that job stops is told so', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const shared = await p.enqueue(job({ coalesce: true }));
    const keyed = await p.enqueue(job({ coalesce: true, idempotencyKey: 'joined-1' }));
    expect(keyed.id).toBe(shared.id);
    const other = job({ coalesce: true, idempotencyKey: 'joined-1', request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Something else' }] } });
    // It named the key's own id, where no job is.
    await expect(p.enqueue(other)).rejects.toMatchObject({ code: 'JOB_INVALID', issues: [{ path: 'idempotencyKey', message: expect.stringContaining(`already names job ${shared.id}, which holds`) }] });
    // The joined job runs, and is cancelled (for every caller): flagged in that call.
    const k = laneKeys(prefix, 'critical');
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    expect((await w.getNextJob('tok', { block: false }))?.id).toBe(shared.id);
    expect(await p.cancel(shared.id)).toBe(false);
    expect(await admin.exists(k.jobCancel(shared.id))).toBe(1);
    // A repeat of the key would have shared the stopping job and ended CANCELLED with it: it is
    // sent again until the job ends, here never (no worker finishes it), so it is told.
    await expect(p.enqueue(job({ coalesce: true, idempotencyKey: 'joined-1' }))).rejects.toMatchObject({ code: 'JOB_STOPPING', jobId: shared.id });
    expect(await admin.hget(k.jobKeyPrefix + shared.id, 'hrJoins')).toBe('1');
  });

  it('runs a job again for a repeat of its idempotency key after a failure that told its caller to retry, and answers one that did not with that failure', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const ask = (idempotencyKey: string) => job({ priority: 'HIGH', idempotencyKey });
    const failures: Record<string, string[]> = {
      'retry-me': ['RETRIES_EXHAUSTED: after 6 attempts, last: 529 overloaded_error: Overloaded'],
      'rejected': ['PROVIDER_REJECTED: 400 invalid_request_error: max_tokens: too large'],
      // A batch's errored entry may be the provider's own failure: never replayed.
      'batch-errored': ['BATCH_ERRORED: api_error: Internal server error'],
    };
    const calls: Record<string, number> = {};
    plainWorker(prefix, 'high', (j) => {
      const key = Object.keys(failures).find((k) => j.id === idempotentJobId('high', k))!;
      calls[key] = (calls[key] ?? 0) + 1;
      const failure = failures[key]!.shift();
      if (failure) throw new Error(failure);
      return fakeResult('claude-sonnet-4-6');
    });
    const failed = await p.enqueue(ask('retry-me'));
    await expect(failed.result({ timeoutMs: 5_000 })).rejects.toThrow(/RETRIES_EXHAUSTED: after 6 attempts/);
    // The gateway answered it 529 with retry-after, and the SDK's retry sends the same key: before,
    // the repeat got the same failure at once, every time, for as long as the job was kept.
    const retried = await p.enqueue(ask('retry-me'));
    expect(retried).toMatchObject({ id: failed.id, existing: false });
    await expect(retried.result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    expect(calls['retry-me']).toBe(2);
    // Answered, the key's repeat is that answer again: no third run.
    await expect((await p.enqueue(ask('retry-me'))).result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    expect(calls['retry-me']).toBe(2);
    // The provider refused the request itself: the repeat is told so again, with no new run.
    const refused = await p.enqueue(ask('rejected'));
    await expect(refused.result({ timeoutMs: 5_000 })).rejects.toThrow(/PROVIDER_REJECTED: 400/);
    const repeat = await p.enqueue(ask('rejected'));
    expect(repeat).toMatchObject({ id: refused.id, existing: true });
    await expect(repeat.result({ timeoutMs: 5_000 })).rejects.toThrow(/PROVIDER_REJECTED: 400/);
    expect(calls.rejected).toBe(1);
    await expect((await p.enqueue(ask('batch-errored'))).result({ timeoutMs: 5_000 })).rejects.toThrow(/BATCH_ERRORED/);
    await expect((await p.enqueue(ask('batch-errored'))).result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    expect(calls['batch-errored']).toBe(2);
  });

  it("keeps the failed run of an idempotency key in the lane's failed set when its repeat runs the job again, until retention trims it", async () => {
    const prefix = await fleetPrefix();
    const p = new Producer({ redis: redis.url, prefix, retention: { failedCount: 2 } });
    open.push(p);
    const k = laneKeys(prefix, 'high');
    const failedSet = `${k.bullPrefix}:${k.queueName}:failed`;
    const outcomes = ['RETRIES_EXHAUSTED: after 6 attempts, last: 529 overloaded_error: Overloaded', 'ok'];
    const w = plainWorker(prefix, 'high', (j) => {
      if (j.data.idempotencyKey !== 'order-9') throw new Error('RETRIES_EXHAUSTED: another job');
      const outcome = outcomes.shift()!;
      if (outcome !== 'ok') throw new Error(outcome);
      return fakeResult('claude-sonnet-4-6');
    });
    const first = await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'order-9' }));
    await expect(first.result({ timeoutMs: 5_000 })).rejects.toThrow(/RETRIES_EXHAUSTED: after 6 attempts/);
    const { finishedAt } = (await p.getJob(first.id))!;
    const again = await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'order-9' }));
    // The key still names its one id, now the new run's: a repeat while it runs shares it.
    expect(again).toMatchObject({ id: first.id, existing: false });
    await expect(again.result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    // The failed run is what Bull Board lists among the lane's failed jobs, with why it failed.
    const kept = `${first.id}.failed-${finishedAt}`;
    expect(await admin.zrange(failedSet, '0', '-1')).toEqual([kept]);
    expect(await p.getJob(kept)).toMatchObject({ state: 'failed', failedReason: expect.stringMatching(/^RETRIES_EXHAUSTED: after 6 attempts/), job: { idempotencyKey: 'order-9' } });
    expect(await p.getJob(first.id)).toMatchObject({ state: 'completed' });
    // Retention trims it as any failed job: two later failures leave the newest two.
    const later = await Promise.all([1, 2].map((n) => p.enqueue(job({ priority: 'HIGH', metadata: { n } }))));
    for (const h of later) await expect(h.result({ timeoutMs: 5_000 })).rejects.toThrow(/another job/);
    expect((await admin.zrange(failedSet, '0', '-1')).sort()).toEqual(later.map((h) => h.id).sort());
    expect(await admin.exists(`${k.jobKeyPrefix}${kept}`)).toBe(0);
    await w.close();
  });

  it('keeps the failed run of an idempotency key when its repeat finds the lane full, and runs it once there is room', async () => {
    const prefix = await fleetPrefix();
    await publishFleetSettings(admin, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic' } }, lanes: { high: { cap: 1 } } }));
    const p = producer(prefix);
    const k = laneKeys(prefix, 'high');
    const failed = await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'full-lane' }));
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    const taken = (await w.getNextJob('tok', { block: false }))!;
    await taken.moveToFailed(new Error('DEADLINE_EXCEEDED: not started within its max wait of 100 ms'), 'tok', false);
    const filler = await p.enqueue(job({ priority: 'HIGH' }));
    await expect(p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'full-lane' }))).rejects.toMatchObject({ code: 'QUEUE_FULL' });
    expect(await admin.hget(`${k.jobKeyPrefix}${failed.id}`, 'failedReason')).toMatch(/^DEADLINE_EXCEEDED/);
    await p.cancel(filler.id);
    // What a cut stream leaves under the id: its events (the relay would take them for an earlier
    // attempt's answer and refuse the new run's) and its cancel flag (it would stop the new run).
    await admin.xadd(k.jobEvents(failed.id), '*', 'event', '{}');
    await admin.set(k.jobCancel(failed.id), '1', 'EX', 60);
    const again = await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'full-lane' }));
    expect(again).toMatchObject({ id: failed.id, existing: false });
    expect(await waitingIds(admin, k)).toEqual([failed.id]);
    expect(await admin.exists(k.jobEvents(failed.id), k.jobCancel(failed.id))).toBe(0);
    expect(await admin.hget(`${k.jobKeyPrefix}${failed.id}`, 'failedReason')).toBeNull();
    // Its failed run is kept beside it, under an id of its own.
    const [kept] = await admin.zrange(`${k.bullPrefix}:${k.queueName}:failed`, '0', '-1');
    expect(kept).toMatch(new RegExp(`^${failed.id.replace('.', '\\.')}\\.failed-\\d+$`));
    expect(await admin.hget(`${k.jobKeyPrefix}${kept}`, 'failedReason')).toMatch(/^DEADLINE_EXCEEDED/);
  });

  it('delivers the result of a job completed by a plain BullMQ worker', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    plainWorker(prefix, 'critical', async (j) => fakeResult((j.data as { request: { model: string } }).request.model));
    const result = await p.run(job(), { timeoutMs: 10_000 });
    expect(result.model).toBe('claude-sonnet-4-6');
    expect(result.usage.inputTokens).toBe(5);
  });

  it('takes its own jobs\' results from its replies stream, and deletes the stream when it closes', async () => {
    const prefix = await fleetPrefix();
    const p = new Producer({ redis: redis.url, prefix });
    plainWorker(prefix, 'critical', async () => fakeResult('claude-sonnet-4-6'));
    const handle = await p.enqueue(job());
    await expect(handle.result({ timeoutMs: 10_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    // The job named this producer's stream; its worker wrote the result there as it finished it.
    const k = laneKeys(prefix, 'critical');
    const replyTo = (JSON.parse((await admin.hget(`${k.jobKeyPrefix}${handle.id}`, 'opts')) ?? '{}') as { hrReplyTo?: string }).hrReplyTo;
    expect(replyTo).toMatch(/^[\w-]+$/);
    const replies = await admin.xrange(k.replies(replyTo!), '-', '+');
    expect(replies.map(([, f]) => f.slice(0, 4))).toEqual([['j', handle.id, 'e', 'completed']]);
    await p.close();
    expect(await admin.exists(k.replies(replyTo!))).toBe(0);
  });

  it('delivers a result that was ready before result() was called', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const handle = await p.enqueue(job());
    const w = plainWorker(prefix, 'critical', async () => fakeResult('claude-sonnet-4-6'));
    await new Promise<void>((resolve) => w.on('completed', () => resolve()));
    await expect(handle.result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    const info = await p.getJob(handle.id);
    expect(info).toMatchObject({ state: 'completed', lane: 'critical', result: { model: 'claude-sonnet-4-6' } });
  });

  it('keeps at most retention.completedCount finished jobs per lane, whatever their age', async () => {
    const prefix = await fleetPrefix();
    const p = new Producer({ redis: redis.url, prefix, retention: { completedCount: 2 } });
    open.push(p);
    await Promise.all(Array.from({ length: 5 }, (_, i) => p.enqueue(job({ metadata: { i } }))));
    const w = plainWorker(prefix, 'critical', async () => fakeResult('claude-sonnet-4-6'));
    let done = 0;
    await new Promise<void>((resolve) => w.on('completed', () => ++done === 5 && resolve()));
    const k = laneKeys(prefix, 'critical');
    expect(await admin.zcard(`${k.bullPrefix}:${k.queueName}:completed`)).toBe(2);
  });

  it('closes every connection it opened', async () => {
    const own = await startEmbeddedRedis();
    const watcher = new Redis(own.url);
    const clients = async () => ((await watcher.client('LIST')) as string).trim().split('\n').length;
    try {
      await fleetPrefix('conns', watcher);
      const p = new Producer({ redis: own.url, prefix: 'conns' });
      const handle = await p.enqueue(job());
      await expect(handle.result({ timeoutMs: 200 })).rejects.toBeInstanceOf(TimeoutError);
      expect(await clients()).toBeGreaterThan(1);
      await p.close();
      await new Promise((r) => setTimeout(r, 200));
      expect(await clients()).toBe(1);
    } finally {
      watcher.disconnect();
      await own.stop();
    }
  });

  it('rejects result() with the failure reason, and times out when nothing runs', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    plainWorker(prefix, 'critical', async () => {
      throw new Error('PROVIDER_ERROR: 400 invalid_request_error: max_tokens too large');
    });
    const failed = p.run(job(), { timeoutMs: 10_000 });
    await expect(failed).rejects.toBeInstanceOf(JobFailedError);
    await expect(failed).rejects.toMatchObject({ reason: 'PROVIDER_ERROR: 400 invalid_request_error: max_tokens too large' });

    const idle = await p.enqueue(job({ priority: 'HIGH' }));
    await expect(idle.result({ timeoutMs: 200 })).rejects.toBeInstanceOf(TimeoutError);
  });

  it('rejects result() of a job shed while it waited with ShedError, the same code as a refusal at enqueue', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const shed = { code: 'SHED', message: 'waited 61 s, past its max wait of 60 s, while pool sonnet-4 is under pressure (0.91)', retryAfterMs: 4_000 };
    // As a Headroom worker records it: the failure in the progress, its text as BullMQ's reason.
    plainWorker(prefix, 'high', async (job) => {
      await job.updateProgress({ attempts: 0, failure: shed });
      throw new Error(`SHED: ${shed.message}`);
    });
    const handle = await p.enqueue(job({ priority: 'HIGH' }));
    const err = await handle.result({ timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShedError);
    expect(err).toMatchObject({ code: 'SHED', jobId: handle.id, lane: 'high', retryAfterMs: 4_000 });
    expect(await p.getJob(handle.id)).toMatchObject({ state: 'failed', failure: shed, failedReason: `SHED: ${shed.message}` });
  });

  it("hands a provider's refusal back with the provider's status, request id and error body", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const body = { error: { message: 'You are not allowed to sample from this model.', type: 'invalid_request_error', param: null, code: 'model_not_found' } };
    const refused = answeredFailure(FailureCode.PROVIDER_REJECTED, `403 invalid_request_error: ${body.error.message}`, { status: 403, requestId: 'req_abc', providerError: providerErrorOf('openai', body) });
    // As a Headroom worker records it: the failure in the progress, its text as BullMQ's reason.
    plainWorker(prefix, 'high', async (job) => {
      await job.updateProgress({ attempts: 1, failure: refused });
      throw new Error(failureText(refused));
    });
    const handle = await p.enqueue(job({ priority: 'HIGH' }));
    const err = await handle.result({ timeoutMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect((err as JobFailedError).failure).toEqual(refused);
    expect((err as JobFailedError).failure.providerError).toEqual({ provider: 'openai', body });
    expect((await p.getJob(handle.id))?.failure).toEqual(refused);
  });

  it('names a job whose worker died with it too often STALLED', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const handle = await p.enqueue(job());
    let started!: () => void;
    const running = new Promise<void>((r) => { started = r; });
    // BullMQ's own workers: what is tested is BullMQ's stalled check, and a job it fails sends no
    // reply, so the waiter learns it from the job (its periodic read).
    const k = laneKeys(prefix, 'critical');
    const bullWorker = (processor: () => Promise<unknown>, opts: Partial<WorkerOptions>) => {
      const w = new Worker(k.queueName, processor, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }), ...opts });
      open.push(w);
      return w;
    };
    const doomed = bullWorker(() => { started(); return new Promise<never>(() => {}); }, { lockDuration: 500, stalledInterval: 200 });
    await running;
    // A forced close stops renewing the lock, as a killed process would: the job is left active.
    await doomed.close(true);
    bullWorker(async () => 'never runs it', { lockDuration: 500, stalledInterval: 200, maxStalledCount: 0 });
    const failed = handle.result({ timeoutMs: 15_000 });
    await expect(failed).rejects.toBeInstanceOf(JobFailedError);
    await expect(failed).rejects.toMatchObject({ failureCode: 'STALLED', reason: expect.stringContaining('job stalled more than allowable limit') });
    expect((await p.getJob(handle.id))?.failure).toMatchObject({ code: 'STALLED', message: expect.stringContaining('job stalled more than allowable limit') });
  });

  it('cancels a waiting job, freeing its slot, and only asks a running one to stop', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const a = await p.enqueue(job({ priority: 'HIGH' }));
    const b = await p.enqueue(job({ priority: 'HIGH' }));
    expect(await p.cancel(a.id)).toBe(true);
    expect(await p.getJob(a.id)).toBeNull();
    const k = laneKeys(prefix, 'high');
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    const running = await w.getNextJob('tok', { block: false });
    expect(running?.id).toBe(b.id);
    expect(await p.cancel(b.id)).toBe(false);
    expect((await p.getJob(b.id))?.state).toBe('active');
    // Its worker is asked to stop: the flag its relay checks is set (the fleet's own test runs it).
    expect(await admin.exists(k.jobCancel(b.id))).toBe(1);
    expect(await p.cancel('high.no-such-job')).toBe(false);
  });

  it('refuses to cancel a batch job whose batch is sent, leaving no cancel flag behind, and removes one its claim holds unsent', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const parked = await p.enqueue(job({ priority: 'LOW', sla: 'none' }));
    const k = laneKeys(prefix, 'batch');
    // The batch leader takes a job into its claim, and marks it sent as it sends its batch.
    const leader = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(leader);
    expect((await leader.getNextJob('claim-1', { block: false }))?.id).toBe(parked.id);
    expect(await parkBatchJobs(admin, prefix, [parked.id], 'claim-1', 60_000, { sending: true })).toEqual([]);
    expect(await p.cancel(parked.id)).toBe(false);
    expect((await p.getJob(parked.id))?.state).toBe('active');
    // Nothing in the batch lane reads the flag: left behind, it would outlive the job by an hour.
    expect(await admin.exists(k.jobCancel(parked.id))).toBe(0);
    // One in a claim not yet sent: nothing reached the provider, so it is removed.
    const filed = await p.enqueue(job({ priority: 'LOW', sla: 'none', metadata: { n: 3 } }));
    expect((await leader.getNextJob('claim-1', { block: false }))?.id).toBe(filed.id);
    expect(await parkBatchJobs(admin, prefix, [filed.id], 'claim-1', 60_000, { sending: false })).toEqual([]);
    expect(await p.cancel(filed.id)).toBe(true);
    expect(await p.getJob(filed.id)).toBeNull();
    // One not yet taken into a claim is removed, as in any lane.
    const waitingOne = await p.enqueue(job({ priority: 'LOW', sla: 'none', metadata: { n: 2 } }));
    expect(await p.cancel(waitingOne.id)).toBe(true);
  });

  it("tells a job's waiter in another producer at once when the job is cancelled, through its replies stream", async () => {
    const prefix = await fleetPrefix();
    const [a, b] = [producer(prefix), producer(prefix)];
    const handle = await a.enqueue(job({ priority: 'HIGH' }));
    // Shorter than the waiter's 5 s sweep: only the cancel's reply can end this wait in time.
    const result = handle.result({ timeoutMs: 3_000 });
    expect(await b.cancel(handle.id)).toBe(true);
    await expect(result).rejects.toMatchObject({ code: 'JOB_FAILED', failureCode: 'CANCELLED' });
  });

  it('tells every waiter of a job cancelled before it started CANCELLED, whoever cancelled it and wherever they wait', async () => {
    const prefix = await fleetPrefix();
    const a = producer(prefix);
    // Another producer on a connection of its own, as in another process.
    const connection = createRedis(redis.url, 'producer');
    open.push({ close: async () => connection.disconnect() });
    const b = new Producer({ redis: connection, prefix });
    open.push(b);

    // Cancelled by the producer that enqueued it: its own waiter (replies stream), and a waiter
    // in the other producer (the lane's events).
    const mine = await a.enqueue(job({ priority: 'HIGH' }));
    const waits = [mine.result({ timeoutMs: 10_000 }), b.handleOf(mine.id).result({ timeoutMs: 10_000 })].map((w) => w.then(() => undefined, (e: unknown) => e));
    expect(await a.cancel(mine.id)).toBe(true);
    for (const err of await Promise.all(waits)) {
      expect(err).toBeInstanceOf(JobFailedError);
      expect(err).toMatchObject({ code: 'JOB_FAILED', jobId: mine.id, failureCode: 'CANCELLED' });
    }
    // Cancelled by the other producer; a result() asked after the cancel is told the same.
    const theirs = await a.enqueue(job({ priority: 'HIGH' }));
    const waiting = theirs.result({ timeoutMs: 10_000 });
    expect(await b.cancel(theirs.id)).toBe(true);
    await expect(waiting).rejects.toMatchObject({ failureCode: 'CANCELLED', reason: expect.stringMatching(/^CANCELLED: cancelled before it started/) });
    await expect(a.handleOf(theirs.id).result({ timeoutMs: 10_000 })).rejects.toMatchObject({ failureCode: 'CANCELLED' });
    // It leaves no record, as before.
    expect(await a.getJob(theirs.id)).toBeNull();
  });

  it('still says JOB_NOT_FOUND for a job gone another way, an idempotent job enqueued again after a cancel included', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    await expect(p.handleOf('high.never-was').result({ timeoutMs: 10_000 })).rejects.toBeInstanceOf(JobNotFoundError);
    const k = laneKeys(prefix, 'high');
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: admin });
    open.push(queue);
    // Removed outside Headroom (Bull Board's remove; a retention trim likewise leaves nothing).
    const removed = await p.enqueue(job({ priority: 'HIGH' }));
    await queue.remove(removed.id);
    await expect(removed.result({ timeoutMs: 10_000 })).rejects.toBeInstanceOf(JobNotFoundError);
    // A key's job cancelled, then enqueued again under the key: the new run is not the cancelled one.
    const first = await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'again-1' }));
    expect(await p.cancel(first.id)).toBe(true);
    const again = await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'again-1' }));
    expect(again).toMatchObject({ id: first.id, existing: false });
    await queue.remove(again.id);
    await expect(p.handleOf(again.id).result({ timeoutMs: 10_000 })).rejects.toBeInstanceOf(JobNotFoundError);
  });

  it('removes a job not yet started when its result times out with cancelOnTimeout, and leaves a running one', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const waiting = await p.enqueue(job({ priority: 'HIGH' }));
    const err = await waiting.result({ timeoutMs: 200, cancelOnTimeout: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err).toMatchObject({ code: 'TIMEOUT', cancelled: true });
    expect(await p.getJob(waiting.id)).toBeNull();

    const running = await p.enqueue(job({ priority: 'HIGH' }));
    const k = laneKeys(prefix, 'high');
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    expect((await w.getNextJob('tok', { block: false }))?.id).toBe(running.id);
    await expect(running.result({ timeoutMs: 200, cancelOnTimeout: true })).rejects.toMatchObject({ code: 'TIMEOUT', cancelled: false });
    expect((await p.getJob(running.id))?.state).toBe('active');
    // Without the option a timeout leaves the job where it is.
    const kept = await p.enqueue(job({ priority: 'HIGH' }));
    await expect(kept.result({ timeoutMs: 100 })).rejects.toBeInstanceOf(TimeoutError);
    expect((await p.getJob(kept.id))?.state).toBe('waiting');
  });

  it('refuses new jobs for a pool the fleet is shedding, with a retry hint, and only for that pool', async () => {
    const prefix = await fleetPrefix();
    await publishFleetSettings(admin, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic', pool: 'sonnet' }, 'claude-haiku-4-5': { provider: 'anthropic' } } }));
    const sec = Number((await admin.time())[0]);
    // The entry the worker's pressure monitor writes: untilMs:retryAfterMs:pressure (Redis time).
    await admin.hset(laneKeys(prefix, 'low').shedding, 'sonnet', `${sec * 1000 + 5_000}:4000:0.970`);
    const p = producer(prefix);
    await expect(p.enqueue(job({ priority: 'LOW' }))).rejects.toMatchObject({ code: 'SHED', lane: 'low', retryAfterMs: 4000 });
    await expect(p.enqueue(job({ priority: 'LOW', request: { model: 'claude-haiku-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] } } as never))).resolves.toBeDefined();
    await expect(p.enqueue(job({ priority: 'HIGH' }))).resolves.toBeDefined();
    // An entry past its time no longer sheds (a fleet that died does not shed forever).
    await admin.hset(laneKeys(prefix, 'low').shedding, 'sonnet', `${sec * 1000 - 1}:4000:0.970`);
    await expect(p.enqueue(job({ priority: 'LOW' }))).resolves.toBeDefined();
  });

  it("takes a LOW job that asked onShed 'batch' into the batch lane when its pool sheds at enqueue, under the batch lane's cap and its tenant's quota there", async () => {
    const prefix = await fleetPrefix();
    await publishFleetSettings(
      admin,
      parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic', pool: 'sonnet' } }, lanes: { batch: { cap: 3 } }, tenants: { overrides: { acme: { maxQueued: 1 } } } }),
    );
    const sec = Number((await admin.time())[0]);
    await admin.hset(laneKeys(prefix, 'low').shedding, 'sonnet', `${sec * 1000 + 60_000}:4000:0.970`);
    const p = producer(prefix);
    const low = (overrides: Partial<LlmJobInput>) => job({ priority: 'LOW', onShed: 'batch', ...overrides });
    const batch = laneKeys(prefix, 'batch');

    // Accepted into the batch lane, as if shed a moment after enqueue: the handle is the batch job.
    const moved = await p.enqueue(low({ tenant: 'acme' }));
    expect(moved).toMatchObject({ lane: 'batch', existing: false });
    expect(moved.id).toMatch(/^batch\.shed-/);
    expect(await p.getJob(moved.id)).toMatchObject({ state: 'waiting', job: { priority: 'LOW', sla: 'none', onShed: 'batch', tenant: 'acme' } });
    expect(await waiting(admin, laneKeys(prefix, 'low'))).toBe(0);
    // The batch lane's admission applies: the tenant's quota there...
    const overQuota = await p.enqueue(low({ tenant: 'acme', metadata: { n: 2 } })).catch((e: unknown) => e);
    expect(overQuota).toBeInstanceOf(ShedError);
    expect(overQuota).toMatchObject({ code: 'SHED', lane: 'low', retryAfterMs: 4000, message: expect.stringMatching(/pool sonnet is under pressure \(0\.97\); the batch lane refused it \(onShed 'batch'\): tenant acme is over its max unfinished jobs in lane batch quota/) });
    // ...an idempotency key's repeat while the pool sheds finds the same batch job...
    const keyed = await p.enqueue(low({ idempotencyKey: 'nightly-7' }));
    expect(keyed.id).toBe(handOffJobId(idempotentJobId('low', 'nightly-7')));
    await expect(p.enqueue(low({ idempotencyKey: 'nightly-7' }))).resolves.toMatchObject({ id: keyed.id, lane: 'batch', existing: true });
    // (After the pressure, too, as a repeat finds a worker's hand-off: no second run in LOW.)
    await admin.hdel(laneKeys(prefix, 'low').shedding, 'sonnet');
    await expect(p.enqueue(low({ idempotencyKey: 'nightly-7' }))).resolves.toMatchObject({ id: keyed.id, lane: 'batch', existing: true });
    await expect(p.enqueue(low({ idempotencyKey: 'nightly-7', metadata: { other: true } }))).rejects.toMatchObject({ code: 'JOB_INVALID', issues: [{ path: 'idempotencyKey' }] });
    expect(await waiting(admin, laneKeys(prefix, 'low'))).toBe(0);
    await admin.hset(laneKeys(prefix, 'low').shedding, 'sonnet', `${sec * 1000 + 60_000}:4000:0.970`);
    // ...and the lane's cap.
    await p.enqueue(low({ metadata: { n: 3 } }));
    expect(await waiting(admin, batch)).toBe(3);
    await expect(p.enqueue(low({ metadata: { n: 4 } }))).rejects.toMatchObject({ code: 'SHED', message: expect.stringMatching(/the batch lane refused it \(onShed 'batch'\): lane batch is full/) });
    // Without onShed 'batch' (or streamed: a batch's answer is no stream) the job is refused, as before.
    await expect(p.enqueue(job({ priority: 'LOW' }))).rejects.toMatchObject({ code: 'SHED', message: expect.not.stringMatching(/batch/) });
    expect(await waiting(admin, batch)).toBe(3);
    // Its answer comes from its batch, to the handle the enqueue returned.
    const leader = new Worker(batch.queueName, null, { prefix: batch.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(leader);
    const taken = (await leader.getNextJob('claim-1', { block: false }))!;
    expect(taken.id).toBe(moved.id);
    await taken.moveToCompleted(fakeResult('claude-sonnet-4-6'), 'claim-1', false);
    await expect(moved.result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
  });

  it('refuses a tenant past its max unfinished jobs, and admits it again once one finishes', async () => {
    const prefix = await fleetPrefix();
    await publishFleetSettings(admin, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic' } }, tenants: { default: { maxQueued: 3 }, overrides: { big: { maxQueued: 5 } } } }));
    const p = producer(prefix);
    const racing = await Promise.allSettled(Array.from({ length: 8 }, () => p.enqueue(job({ priority: 'HIGH', tenant: 'acme' }))));
    expect(racing.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    const refused = racing.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(refused?.reason).toMatchObject({ code: 'QUOTA_EXCEEDED', tenant: 'acme', limit: 3 });
    for (let i = 0; i < 5; i++) await p.enqueue(job({ priority: 'HIGH', tenant: 'big' }));
    await expect(p.enqueue(job({ priority: 'HIGH', tenant: 'big' }))).rejects.toMatchObject({ code: 'QUOTA_EXCEEDED' });
    await expect(p.enqueue(job({ priority: 'HIGH', tenant: 'other' }))).resolves.toBeDefined();
    const k = laneKeys(prefix, 'high');
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    const started = await w.getNextJob('tok', { block: false });
    // Running is not finished: a runaway tenant's in-flight work still counts against it.
    expect(started?.data.tenant).toBe('acme');
    await expect(p.enqueue(job({ priority: 'HIGH', tenant: 'acme' }))).rejects.toMatchObject({ code: 'QUOTA_EXCEEDED' });
    const acme = (await Promise.all((await waitingIds(admin, k)).map((id) => p.getJob(id)))).find((j) => j?.job.tenant === 'acme');
    expect(await p.cancel(acme!.id)).toBe(true);
    await expect(p.enqueue(job({ priority: 'HIGH', tenant: 'acme' }))).resolves.toBeDefined();
  });

  it('scopes idempotency keys per tenant, and no key reaches the id of a hand-off to the batch lane', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const a1 = await p.enqueue(job({ idempotencyKey: 'order-1', tenant: 'acme' }));
    const a2 = await p.enqueue(job({ idempotencyKey: 'order-1', tenant: 'acme' }));
    const b1 = await p.enqueue(job({ idempotencyKey: 'order-1', tenant: 'globex' }));
    expect(a2).toMatchObject({ id: a1.id, existing: true });
    expect(b1.id).not.toBe(a1.id);
    expect(b1.existing).toBe(false);
    // A caller that guesses the form the worker's hand-offs once used gets a job of its own.
    const shed = await p.enqueue(job({ priority: 'LOW', sla: 'none', idempotencyKey: 'shed:low.0000', tenant: 'acme' }));
    expect(shed.id).toMatch(/^batch\.idem-/);
    expect(handOffJobId('low.0000')).toMatch(/^batch\.shed-/);
    expect(handOffJobId('low.0000')).not.toBe(shed.id);
  });

  it('scopes idempotency keys per lane: another priority (or sla) makes another job; in one lane another job under the key is JOB_INVALID', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const normal = await p.enqueue(job({ priority: 'NORMAL', idempotencyKey: 'order-7' }));
    const high = await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'order-7' }));
    const batch = await p.enqueue(job({ priority: 'NORMAL', sla: 'none', idempotencyKey: 'order-7' }));
    expect(new Set([normal.id, high.id, batch.id]).size).toBe(3);
    expect([normal.existing, high.existing, batch.existing]).toEqual([false, false, false]);
    // Within a lane the key names one job: the same job again returns it, another is refused.
    await expect(p.enqueue(job({ priority: 'NORMAL', idempotencyKey: 'order-7' }))).resolves.toMatchObject({ id: normal.id, existing: true });
    await expect(p.enqueue(job({ priority: 'NORMAL', idempotencyKey: 'order-7', metadata: { other: true } }))).rejects.toMatchObject({ code: 'JOB_INVALID', issues: [{ path: 'idempotencyKey' }] });
    // The batch lane holds every priority: there another priority is another job under the key.
    await expect(p.enqueue(job({ priority: 'LOW', sla: 'none', idempotencyKey: 'order-7' }))).rejects.toMatchObject({ code: 'JOB_INVALID' });
  });

  it('waits past the longest Node timer, and refuses a timeoutMs that is not a positive number', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const handle = await p.enqueue(job());
    // 2^31 ms and more: a plain setTimeout would fire at once and reject with TIMEOUT.
    const long = handle.result({ timeoutMs: 2 ** 31 + 5_000 });
    const settledEarly = await Promise.race([long.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r('waiting'), 300))]);
    expect(settledEarly).toBe('waiting');
    for (const bad of [0, -1, Number.NaN, '100' as unknown as number]) {
      await expect(handle.result({ timeoutMs: bad })).rejects.toThrow(/timeoutMs must be a positive number/);
    }
    await p.cancel(handle.id);
    await expect(long).rejects.toMatchObject({ code: 'JOB_FAILED', failureCode: 'CANCELLED' });
    // run() and stream() refuse it before enqueueing: after, the job would run while its caller
    // saw an error.
    const k = laneKeys(prefix, 'critical');
    const before = await waiting(admin, k);
    expect(before).toBe(0);
    await expect(p.run(job(), { timeoutMs: Number.NaN })).rejects.toThrow(/^run\(\): timeoutMs must be a positive number/);
    await expect(p.stream(job(), { timeoutMs: -1 })).rejects.toThrow(/^stream\(\): timeoutMs must be a positive number/);
    expect(await waiting(admin, k)).toBe(before);
  });

  it('reads whether a waited-on job ended from a few fields, never its data', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const handles = await Promise.all(Array.from({ length: 5 }, () => p.enqueue(job({ request: { model: 'claude-sonnet-4-6', max_tokens: 8, messages: [{ role: 'user', content: 'x'.repeat(200_000) }] } } as never))));
    const calls = async (cmd: string) => Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(await admin.info('commandstats'))?.[1] ?? 0);
    const before = { hgetall: await calls('hgetall'), hmget: await calls('hmget') };
    // Handles of jobs enqueued elsewhere: their results do not come to this producer, so each
    // waiter reads its job once.
    const waits = handles.map((h) => p.handleOf(h.id).result({ timeoutMs: 400 }).catch((e: unknown) => e));
    for (const w of await Promise.all(waits)) expect(w).toBeInstanceOf(TimeoutError);
    expect(await calls('hgetall')).toBe(before.hgetall);
    expect(await calls('hmget')).toBeGreaterThanOrEqual(before.hmget + 5);
  });

  it('refuses with REDIS_OOM when Redis is at its maxmemory, and writes nothing', async () => {
    const own = await startEmbeddedRedis({ args: ['--maxmemory-policy', 'noeviction'] });
    const ownAdmin = new Redis(own.url);
    open.push({ close: async () => { ownAdmin.disconnect(); await own.stop(); } });
    await fleetPrefix('hr', ownAdmin);
    const p = new Producer({ redis: own.url });
    open.push(p);
    await p.enqueue(job());
    // What is in use now, less a little: every write that grows memory is refused.
    const used = Number(/used_memory:(\d+)/.exec(await ownAdmin.info('memory'))?.[1]);
    await ownAdmin.config('SET', 'maxmemory', String(used - 1024));
    const before = await waiting(ownAdmin, laneKeys('hr', 'critical'));
    const err = await p.enqueue(job()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisOomError);
    expect(err).toMatchObject({ code: 'REDIS_OOM', retryable: true });
    expect(await waiting(ownAdmin, laneKeys('hr', 'critical'))).toBe(before);
  });

  it("takes a job that writes a default out (api 'chat', sla 'interactive', coalesce false) as the job that leaves it out: one coalesced job, one idempotency key's job", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const chat = (extra: Record<string, unknown>) => ({ priority: 'NORMAL', provider: 'openai', request: { model: 'gpt-4.1', max_completion_tokens: 32, messages: [{ role: 'user', content: 'Defaults?' }] }, ...extra }) as LlmJobInput;
    // Coalesced: a service that names the default API and one (the gateway) that does not.
    const named = await p.enqueue(chat({ coalesce: true, api: 'chat' }));
    const unnamed = await p.enqueue(chat({ coalesce: true }));
    expect(unnamed).toMatchObject({ id: named.id, existing: true });
    // An idempotency key's repeat: the gateway writes `headroom-sla: interactive` and
    // `headroom-coalesce: false` out; a producer leaves them out. Refused as "a different job" before.
    const first = await p.enqueue(chat({ idempotencyKey: 'defaults-k', sla: 'interactive', coalesce: false, api: 'chat' }));
    expect(await p.enqueue(chat({ idempotencyKey: 'defaults-k' }))).toMatchObject({ id: first.id, existing: true });
    expect(await waiting(admin, laneKeys(prefix, 'normal'))).toBe(2);
  });

  it("takes a key's repeat that writes out a request default (stream false, n 1, a null) or reorders its betas as the key's job, alone or coalesced; another prompt is refused naming the job", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const ask = (idempotencyKey: string, request: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
      job({ priority: 'HIGH', idempotencyKey, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Retried elsewhere' }], ...request }, ...extra } as never);
    // A service's first call, then its retry through another SDK (or curl) that writes the default out.
    const first = await p.enqueue(ask('sdk-k', {}, { betas: ['b-2', 'a-1'] }));
    expect(await p.enqueue(ask('sdk-k', { stream: false }, { betas: ['a-1', 'b-2'] }))).toMatchObject({ id: first.id, existing: true });
    const chat = (request: Record<string, unknown>) => ({ priority: 'HIGH', provider: 'openai', idempotencyKey: 'chat-k', request: { model: 'gpt-4.1', max_completion_tokens: 32, messages: [{ role: 'user', content: 'Retried elsewhere' }], ...request } }) as LlmJobInput;
    const chatFirst = await p.enqueue(chat({}));
    expect(await p.enqueue(chat({ n: 1, stream: null, temperature: null }))).toMatchObject({ id: chatFirst.id, existing: true });
    await expect(p.enqueue(chat({ n: 2 }))).rejects.toMatchObject({ code: 'JOB_INVALID', issues: [{ path: 'idempotencyKey', message: expect.stringContaining(`already names job ${chatFirst.id}`) }] });
    await expect(p.enqueue(ask('sdk-k', { messages: [{ role: 'user', content: 'Another question' }] }, { betas: ['a-1', 'b-2'] }))).rejects.toMatchObject({
      code: 'JOB_INVALID',
      issues: [{ path: 'idempotencyKey', message: expect.stringContaining(`already names job ${first.id}, which holds a different job`) }],
    });
    // A key whose first request coalesced into another job: its repeat written otherwise finds that job too.
    const shared = await p.enqueue(ask('joined-a', {}, { coalesce: true }));
    expect(await p.enqueue(ask('joined-b', {}, { coalesce: true }))).toMatchObject({ id: shared.id, existing: true });
    expect(await p.enqueue(ask('joined-b', { stream: false }, { coalesce: true }))).toMatchObject({ id: shared.id, existing: true });
    await expect(p.enqueue(ask('joined-b', { max_tokens: 64 }, { coalesce: true }))).rejects.toMatchObject({ code: 'JOB_INVALID', issues: [{ path: 'idempotencyKey', message: expect.stringContaining(`already names job ${shared.id}`) }] });
    expect(await waiting(admin, laneKeys(prefix, 'high'))).toBe(3);
  });

  it('coalesces identical in-flight jobs into one', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const same = () => job({ priority: 'NORMAL', coalesce: true, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Same question' }] } } as never);
    const handles = await Promise.all(Array.from({ length: 50 }, () => p.enqueue(same())));
    expect(new Set(handles.map((h) => h.id)).size).toBe(1);
    expect(handles.filter((h) => !h.existing)).toHaveLength(1);
    expect(await waiting(admin, laneKeys(prefix, 'normal'))).toBe(1);
    // Key order does not matter; a different request is a different job.
    const reordered = await p.enqueue({ coalesce: true, request: { messages: [{ content: 'Same question', role: 'user' }], max_tokens: 32, model: 'claude-sonnet-4-6' }, provider: 'anthropic', priority: 'NORMAL' } as LlmJobInput);
    expect(reordered.id).toBe(handles[0]!.id);
    const other = await p.enqueue(job({ priority: 'NORMAL', coalesce: true }));
    expect(other.id).not.toBe(handles[0]!.id);
    // Per tenant: another tenant's identical request is a job of its own, and learns nothing.
    const acme = await p.enqueue({ ...same(), tenant: 'acme' });
    const globex = await p.enqueue({ ...same(), tenant: 'globex' });
    expect([acme.existing, globex.existing]).toEqual([false, false]);
    expect(new Set([acme.id, globex.id, handles[0]!.id]).size).toBe(3);
    expect((await p.enqueue({ ...same(), tenant: 'acme' })).id).toBe(acme.id);
    // Per ladder: no fallback (the config's ladder) and fallback [] (the primary alone) are two jobs,
    // whichever comes first; a first caller's ladder used to answer both.
    const primaryOnly = await p.enqueue({ ...same(), fallback: [] });
    expect(primaryOnly.existing).toBe(false);
    expect(primaryOnly.id).not.toBe(handles[0]!.id);
    expect((await p.enqueue({ ...same(), fallback: [] })).id).toBe(primaryOnly.id);
    // An idempotency key compares the job whole: the two ladders are two requests there too.
    await p.enqueue({ ...same(), coalesce: false, idempotencyKey: 'ladder-k' });
    await expect(p.enqueue({ ...same(), coalesce: false, idempotencyKey: 'ladder-k', fallback: [] })).rejects.toMatchObject({ code: 'JOB_INVALID', issues: [{ path: 'idempotencyKey' }] });
    // Per scope: a gateway key without a tenant shares only with itself.
    const app = await p.enqueue({ ...same(), scope: 'gateway-key:app' });
    const capped = await p.enqueue({ ...same(), scope: 'gateway-key:capped' });
    expect(new Set([app.id, capped.id, handles[0]!.id]).size).toBe(3);
    expect((await p.enqueue({ ...same(), scope: 'gateway-key:app' })).id).toBe(app.id);
  });

  it('lets a coalesced request join its job in flight when the lane is full or its tenant at its max: a join takes no room', async () => {
    const prefix = await fleetPrefix();
    await publishFleetSettings(admin, parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic' } }, lanes: { high: { cap: 2 } }, tenants: { default: { maxQueued: 2 } } }));
    const p = producer(prefix);
    const shared = () => job({ priority: 'HIGH', tenant: 'acme', coalesce: true, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Asked by many' }] } } as never);
    const first = await p.enqueue(shared());
    await p.enqueue(job({ priority: 'HIGH', tenant: 'acme' }));
    // The lane holds its cap and acme its max: a new job is refused for either, a join is not.
    await expect(p.enqueue(job({ priority: 'HIGH', tenant: 'other' }))).rejects.toMatchObject({ code: 'QUEUE_FULL' });
    await expect(p.enqueue(job({ priority: 'HIGH', tenant: 'acme' }))).rejects.toMatchObject({ code: 'QUOTA_EXCEEDED' });
    await expect(p.enqueue(shared())).resolves.toMatchObject({ id: first.id, existing: true });
    // Another tenant's identical request joins nothing (coalescing is per tenant): a new job, refused.
    await expect(p.enqueue({ ...shared(), tenant: 'globex' })).rejects.toMatchObject({ code: 'QUEUE_FULL' });
    expect(await waiting(admin, laneKeys(prefix, 'high'))).toBe(2);
    // Another request coalesces nowhere: refused as any new job.
    await expect(p.enqueue({ ...shared(), request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Asked once' }] } } as never)).rejects.toMatchObject({ code: 'QUOTA_EXCEEDED' });
  });

  it('serves identical requests from a finished result for resultCacheTtlMs, but never a failure: the next one runs afresh', async () => {
    const prefix = await fleetPrefix();
    const p = new Producer({ redis: redis.url, prefix, resultCacheTtlMs: 60_000 });
    open.push(p);
    const ask = (content: string) => job({ priority: 'HIGH', coalesce: true, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content }] } } as never);
    let calls = 0;
    plainWorker(prefix, 'high', (j) => {
      calls += 1;
      if ((j.data as { request: { messages: { content: string }[] } }).request.messages[0]!.content === 'fails once' && calls === 2) throw new Error('RETRIES_EXHAUSTED: after 6 attempts, last: 529 overloaded_error: Overloaded');
      return fakeResult('claude-sonnet-4-6');
    });
    const ok = await p.enqueue(ask('answered'));
    await ok.result({ timeoutMs: 5_000 });
    // A completed answer is served again from the cache: same job, no new call.
    const again = await p.enqueue(ask('answered'));
    expect(again).toMatchObject({ id: ok.id, existing: true });
    await again.result({ timeoutMs: 5_000 });
    expect(calls).toBe(1);
    // A failure is not an answer to serve: the identical request after it is a new job.
    const failing = await p.enqueue(ask('fails once'));
    await expect(failing.result({ timeoutMs: 5_000 })).rejects.toThrow(/529 overloaded_error/);
    const retried = await p.enqueue(ask('fails once'));
    expect(retried.id).not.toBe(failing.id);
    expect(retried.existing).toBe(false);
    await expect(retried.result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
  });

  it('coalesces for as long as a job is in flight, however short the result cache, and caches from its completion', async () => {
    const prefix = await fleetPrefix();
    // A cache of 2 s: room enough, on a busy machine, to read the key after the job completes.
    const p = new Producer({ redis: redis.url, prefix, resultCacheTtlMs: 2_000 });
    open.push(p);
    const ask = (content: string, stream = false) => job({ priority: 'HIGH', coalesce: true, request: { model: 'claude-sonnet-4-6', max_tokens: 32, stream, messages: [{ role: 'user', content }] } } as never);
    const first = await p.enqueue(ask('waits long'));
    // No worker yet: the job waits past the cache's 2 s, and identical requests still join it.
    await new Promise((r) => setTimeout(r, 2_300));
    await expect(p.enqueue(ask('waits long'))).resolves.toMatchObject({ id: first.id, existing: true });
    plainWorker(prefix, 'high', () => fakeResult('claude-sonnet-4-6'));
    await first.result({ timeoutMs: 5_000 });
    const keys = await admin.keys(`${laneKeys(prefix, 'high').jobKeyPrefix}de:*`);
    const values = await Promise.all(keys.map((k) => admin.get(k)));
    // From its completion, the cache's 2 s.
    const key = keys[values.indexOf(first.id)];
    expect(key).toBeDefined();
    const left = await admin.pttl(key!);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(2_000);
    await expect(p.enqueue(ask('waits long'))).resolves.toMatchObject({ id: first.id, existing: true });
    await waitUntil(async () => (await admin.exists(key!)) === 0);
    await expect(p.enqueue(ask('waits long'))).resolves.toMatchObject({ existing: false });

    // A streamed job's answer is cached as long as any other's: a join after its events expired
    // is streamed the answer from its result (stream.test.ts).
    const long = new Producer({ redis: redis.url, prefix, resultCacheTtlMs: 3_600_000 });
    open.push(long);
    const streamed = await long.enqueue(ask('streamed', true));
    expect((await admin.hgetall(`${laneKeys(prefix, 'high').jobKeyPrefix}${streamed.id}`)).opts).toContain('"hrCacheTtl":3600000');
  });

  it('does not serve a cached result whose job retention already removed: the identical request runs afresh', async () => {
    const prefix = await fleetPrefix();
    // A cache longer than the jobs are kept: at a high rate, a count of 10,000 goes in minutes.
    const p = new Producer({ redis: redis.url, prefix, resultCacheTtlMs: 60_000, retention: { completedCount: 1 } });
    open.push(p);
    const ask = (content: string) => job({ priority: 'HIGH', coalesce: true, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content }] } } as never);
    let calls = 0;
    plainWorker(prefix, 'high', () => {
      calls += 1;
      return fakeResult('claude-sonnet-4-6');
    });
    const first = await p.enqueue(ask('kept briefly'));
    await first.result({ timeoutMs: 5_000 });
    // Another job completes: retention keeps one, so the first is removed while its cache key lives.
    await (await p.enqueue(ask('another'))).result({ timeoutMs: 5_000 });
    await waitUntil(async () => (await admin.exists(`${laneKeys(prefix, 'high').jobKeyPrefix}${first.id}`)) === 0);
    const again = await p.enqueue(ask('kept briefly'));
    expect(again.id).not.toBe(first.id);
    expect(again.existing).toBe(false);
    await expect(again.result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    expect(calls).toBe(3);
  });

  it('keeps an idempotency key that coalesced into another job naming that job after it finished: its repeat makes no new call', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const ask = (idempotencyKey: string, content = 'Asked under two keys') =>
      job({ priority: 'HIGH', coalesce: true, idempotencyKey, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content }] } } as never);
    const first = await p.enqueue(ask('key-a'));
    const joined = await p.enqueue(ask('key-b'));
    expect(joined).toMatchObject({ id: first.id, existing: true });
    let calls = 0;
    plainWorker(prefix, 'high', () => {
      calls += 1;
      return fakeResult('claude-sonnet-4-6');
    });
    await joined.result({ timeoutMs: 5_000 });
    // No result cache: the coalescing key went with the job's end. Before, key-b's repeat (a
    // client's retry after a lost answer) named no job and ran the call again.
    const k = laneKeys(prefix, 'high');
    const alias = k.idempotentAlias(idempotentJobId('high', 'key-b'));
    // Kept as long as the job's retention keeps it (the producer's default: 7 days for a failure).
    expect(await admin.ttl(alias)).toBeGreaterThan(7 * 24 * 3600 - 60);
    const repeat = await p.enqueue(ask('key-b'));
    expect(repeat).toMatchObject({ id: first.id, existing: true });
    await expect(repeat.result({ timeoutMs: 5_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    expect(calls).toBe(1);
    expect(await admin.hget(`${k.jobKeyPrefix}${first.id}`, 'hrJoins')).toBe('2');
    // The key names the job it was first sent with: another job under it is refused, as for any key.
    await expect(p.enqueue(ask('key-b', 'Another question'))).rejects.toMatchObject({ code: 'JOB_INVALID' });
    // Once the joined job is gone (retention), the key's repeat makes a job of its own.
    await admin.del(`${k.jobKeyPrefix}${first.id}`);
    const afresh = await p.enqueue(ask('key-b'));
    expect(afresh).toMatchObject({ id: idempotentJobId('high', 'key-b'), existing: false });
  });

  it('does not join a coalesced request to its job in flight once that job is cancelled: it gets a job of its own', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const ask = () => job({ priority: 'HIGH', coalesce: true, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Cancelled mid-call' }] } } as never);
    const first = await p.enqueue(ask());
    const k = laneKeys(prefix, 'high');
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    expect((await w.getNextJob('tok', { block: false }))?.id).toBe(first.id);
    // Its only caller leaves while it runs: it is flagged cancelled, and its worker stops it.
    expect(await p.cancel(first.id, { keepShared: true })).toBe(false);
    const next = await p.enqueue(ask());
    expect(next.id).not.toBe(first.id);
    expect(next.existing).toBe(false);
    expect(await waitingIds(admin, k)).toEqual([next.id]);
    // A join of the new one is a join again.
    await expect(p.enqueue(ask())).resolves.toMatchObject({ id: next.id, existing: true });
  });

  it("leaves a job callers share to the others when one stops waiting, and cancels it when the last does", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const coalesced = () => job({ priority: 'NORMAL', coalesce: true, request: { model: 'claude-sonnet-4-6', max_tokens: 32, messages: [{ role: 'user', content: 'Shared question' }] } } as never);
    const [a, b, c] = await Promise.all([p.enqueue(coalesced()), p.enqueue(coalesced()), p.enqueue(coalesced())]);
    expect(new Set([a!.id, b!.id, c!.id]).size).toBe(1);
    // Two callers stop waiting: the job stays for the third (each is out of it: true).
    expect(await p.cancel(a!.id, { keepShared: true })).toBe(true);
    expect(await p.cancel(b!.id, { keepShared: true, ifNotStarted: true })).toBe(true);
    expect((await p.getJob(a!.id))?.state).toBe('waiting');
    // A timed-out wait is one of those (cancelOnTimeout): the last caller's removes the job.
    await expect(c!.result({ timeoutMs: 100, cancelOnTimeout: true })).rejects.toMatchObject({ code: 'TIMEOUT', cancelled: true });
    expect(await p.getJob(a!.id)).toBeNull();

    // An idempotent repeat shares the same way; an explicit cancel still stops it for everyone.
    const first = await p.enqueue(job({ idempotencyKey: 'shared-1' }));
    await p.enqueue(job({ idempotencyKey: 'shared-1' }));
    expect(await p.cancel(first.id, { keepShared: true })).toBe(true);
    expect((await p.getJob(first.id))?.state).toBe('waiting');
    expect(await p.cancel(first.id)).toBe(true);
  });

  it('leaves a shared job that has started untouched when a caller cancels only if not started: its share is kept', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const first = await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'started-1' }));
    await p.enqueue(job({ priority: 'HIGH', idempotencyKey: 'started-1' }));
    const k = laneKeys(prefix, 'high');
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    expect((await w.getNextJob('tok', { block: false }))?.id).toBe(first.id);
    // A start deadline passing after the start: the caller waits on, still sharing the job.
    expect(await p.cancel(first.id, { keepShared: true, ifNotStarted: true })).toBe(false);
    expect(await admin.hget(`${k.jobKeyPrefix}${first.id}`, 'hrJoins')).toBe('1');
    // A caller that leaves gives its share back, started or not; the last one's leaving is a cancel.
    expect(await p.cancel(first.id, { keepShared: true })).toBe(true);
    expect(await admin.hget(`${k.jobKeyPrefix}${first.id}`, 'hrJoins')).toBe('0');
    expect(await p.cancel(first.id, { keepShared: true })).toBe(false);
    expect((await p.getJob(first.id))?.state).toBe('active');
  });

  it('withdraws a job not started within its maxWaitMs at the deadline and rejects DEADLINE_EXCEEDED, where before the caller waited until a worker reached it', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const k = laneKeys(prefix, 'critical');
    const handle = await p.enqueue(job({ maxWaitMs: 300 }));
    const err = await handle.result({ timeoutMs: 10_000 }).catch((e: unknown) => e);
    // At its deadline: the wait's own end, at 10 s, would have been a TimeoutError.
    expect(err).toBeInstanceOf(JobFailedError);
    expect(err).toMatchObject({ failureCode: 'DEADLINE_EXCEEDED', message: expect.stringContaining('did not start within 300 ms') });
    // No worker will call the provider for it: it is gone, its slot given back.
    expect(await p.getJob(handle.id)).toBeNull();
    expect(await waiting(admin, k)).toBe(0);
    // A job that started in time is waited for past its deadline: its call is being paid for.
    const slow = plainWorker(prefix, 'critical', async () => {
      await new Promise((r) => setTimeout(r, 600));
      return fakeResult('claude-sonnet-4-6');
    });
    await expect(p.run(job({ maxWaitMs: 300 }), { timeoutMs: 10_000 })).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
    await slow.close();
  });

  it('leaves a job a worker took and put back to that worker at the deadline: its end, with its attempts, is the worker\'s to record', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const k = laneKeys(prefix, 'high');
    const handle = await p.enqueue(job({ priority: 'HIGH', maxWaitMs: 300 }));
    const w = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
    open.push(w);
    // Taken, then put back to wait (for its bucket, say): not started now, but not untouched.
    const taken = await w.getNextJob('tok', { block: false });
    expect(taken?.id).toBe(handle.id);
    await taken!.moveToWait('tok');
    const ended = handle.result({ timeoutMs: 10_000 }).then(() => 'completed', (e: JobFailedError) => e.failureCode);
    await new Promise((r) => setTimeout(r, 800));
    // Past the deadline the job is still there for its worker, and its caller still waits.
    expect((await p.getJob(handle.id))?.state).toBe('waiting');
    expect(await Promise.race([ended, new Promise((r) => setTimeout(() => r('waiting'), 50))])).toBe('waiting');
    // The worker ends it at the deadline, and the caller hears that.
    const again = await w.getNextJob('tok2', { block: false });
    const failure = jobFailure(FailureCode.DEADLINE_EXCEEDED, 'not started within its maxWaitMs of 300 ms (waited 900 ms)');
    await again!.updateProgress({ failure });
    await finishJob(admin, prefix, 'high', w.backend, again!, 'tok2', { failed: failureText(failure) });
    expect(await ended).toBe('DEADLINE_EXCEEDED');
  });

  it("gives a caller joining a coalesced job its own maxWaitMs: it leaves at its deadline, the job stays for the others", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const k = laneKeys(prefix, 'high');
    const ask = (maxWaitMs: number) => coalescedHigh('Patient and hasty', maxWaitMs);
    const patient = await p.enqueue(ask(60_000));
    const hasty = await p.enqueue(ask(200));
    expect(hasty).toMatchObject({ id: patient.id, existing: true });
    const patientResult = patient.result({ timeoutMs: 20_000 });
    // The hasty caller hears at its own deadline, not the first caller's minute.
    await expect(hasty.result({ timeoutMs: 20_000 })).rejects.toMatchObject({ failureCode: 'DEADLINE_EXCEEDED' });
    expect(await admin.hget(`${k.jobKeyPrefix}${patient.id}`, 'hrJoins')).toBe('0');
    expect(await waitingIds(admin, k)).toEqual([patient.id]);
    // The job then runs for the patient one.
    plainWorker(prefix, 'high', () => fakeResult('claude-sonnet-4-6'));
    await expect(patientResult).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
  });

  it('tells a caller that it joined a coalesced job by its handle, and hands every caller the one result, which names none of them', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const first = await p.enqueue(coalescedHigh('Who joined?', 60_000));
    const joiner = await p.enqueue(coalescedHigh('Who joined?', 60_000));
    expect([first.existing, joiner.existing]).toEqual([false, true]);
    plainWorker(prefix, 'high', () => fakeResult('claude-sonnet-4-6'));
    const [a, b] = await Promise.all([first.result({ timeoutMs: 20_000 }), joiner.result({ timeoutMs: 20_000 })]);
    expect(b).toEqual(a);
    // The result is stored once for all its callers: a per-caller `coalesced` flag could not be true of it.
    expectTypeOf<LlmResult>().not.toHaveProperty('coalesced');
  });

  it('gives back one share per caller: a caller that stopped waiting and then passes its deadline leaves once', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const k = laneKeys(prefix, 'high');
    const ask = (maxWaitMs: number) => coalescedHigh('Three callers', maxWaitMs);
    const a = await p.enqueue(ask(60_000));
    const b = await p.enqueue(ask(300));
    const c = await p.enqueue(ask(60_000));
    expect(await admin.hget(`${k.jobKeyPrefix}${a.id}`, 'hrJoins')).toBe('2');
    const aResult = a.result({ timeoutMs: 20_000 });
    // B's client goes away before the start: B's share is given back...
    const gone = new AbortController();
    const bResult = b.result({ timeoutMs: 20_000, signal: gone.signal });
    gone.abort(new Error('client left'));
    await expect(bResult).rejects.toThrow('client left');
    await waitUntil(async () => (await admin.hget(`${k.jobKeyPrefix}${a.id}`, 'hrJoins')) === '1');
    // ...and its deadline, passing later on another wait of B's, gives back nothing more (it gave
    // back a second share, so C's leaving below stopped the job under A).
    await expect(b.result({ timeoutMs: 20_000 })).rejects.toMatchObject({ failureCode: 'DEADLINE_EXCEEDED' });
    expect(await admin.hget(`${k.jobKeyPrefix}${a.id}`, 'hrJoins')).toBe('1');
    // C asks with a signal already aborted: it is out at once.
    await expect(c.result({ timeoutMs: 20_000, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    await waitUntil(async () => (await admin.hget(`${k.jobKeyPrefix}${a.id}`, 'hrJoins')) === '0');
    expect(await waitingIds(admin, k)).toEqual([a.id]);
    plainWorker(prefix, 'high', () => fakeResult('claude-sonnet-4-6'));
    await expect(aResult).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
  });

  it("moves a shared job's deadline back to the latest of the callers left when the caller with the latest stops waiting", async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    const k = laneKeys(prefix, 'high');
    const deadline = async (id: string) => Number(await admin.hget(`${k.jobKeyPrefix}${id}`, 'hrMaxWait'));
    const a = await p.enqueue(coalescedHigh('Who waits longest?', 20_000));
    const b = await p.enqueue(coalescedHigh('Who waits longest?', 600_000));
    const c = await p.enqueue(coalescedHigh('Who waits longest?', 60_000));
    expect(b.id).toBe(a.id);
    // B's, counted from the job's enqueue (B joined a moment after it).
    expect(await deadline(a.id)).toBeGreaterThanOrEqual(600_000);
    const aResult = a.result({ timeoutMs: 20_000 });
    // B's client goes away before the start: the job waits for C's now, not B's.
    await expect(b.result({ timeoutMs: 20_000, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    await waitUntil(async () => (await deadline(a.id)) < 600_000);
    expect(await deadline(a.id)).toBeGreaterThanOrEqual(60_000);
    // C's leaving by its own timeout, asked to cancel: A's own.
    await expect(c.result({ timeoutMs: 50, cancelOnTimeout: true })).rejects.toMatchObject({ code: 'TIMEOUT', cancelled: true });
    expect(await deadline(a.id)).toBe(20_000);
    plainWorker(prefix, 'high', () => fakeResult('claude-sonnet-4-6'));
    await expect(aResult).resolves.toMatchObject({ model: 'claude-sonnet-4-6' });
  });

  it('writes a job exactly as BullMQ Queue.add does (hash, wait list, marker, events)', async () => {
    // Admission embeds BullMQ's own add script; this is what keeps that embedding honest. In a
    // FIFO lane: a fair lane then moves the job to its place in the prioritized set (below).
    const ours = await fleetPrefix(undefined, admin, { lanes: { normal: { fairness: 'fifo' } } });
    const theirs = `t${randomUUID().slice(0, 8)}`;
    const p = producer(ours);
    const handle = await p.enqueue(job({ priority: 'NORMAL' }));
    const stored = await admin.hgetall(`${laneKeys(ours, 'normal').jobKeyPrefix}${handle.id}`);
    const k = laneKeys(theirs, 'normal');
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: admin });
    open.push(queue);
    const plain = await queue.add(`anthropic:claude-sonnet-4-6`, JSON.parse(stored.data!), { jobId: handle.id, ...JSON.parse(stored.opts!) });
    const expected = await admin.hgetall(`${k.jobKeyPrefix}${plain.id}`);
    // Queue.add takes the id in `opts.jobId` and stores that copy in the options; Headroom hands
    // BullMQ the id directly, so the stored options are the same less that copy.
    const { jobId, ...optsWithoutId } = JSON.parse(expected.opts!) as Record<string, unknown>;
    expect(jobId).toBe(handle.id);
    expect({ ...stored, timestamp: 'T', opts: JSON.parse(stored.opts!) }).toEqual({ ...expected, timestamp: 'T', opts: optsWithoutId });
    for (const [prefix, queueKeys] of [[ours, laneKeys(ours, 'normal')], [theirs, k]] as const) {
      expect(await admin.lrange(queueKeys.wait, 0, -1), prefix).toEqual([handle.id]);
      expect(await admin.zscore(`${queueKeys.jobKeyPrefix}marker`, '0'), prefix).toBe('0');
      const events = (await admin.xrange(`${queueKeys.jobKeyPrefix}events`, '-', '+')).map(([, fields]) => fields);
      expect(events, prefix).toEqual([
        ['event', 'added', 'jobId', handle.id, 'name', 'anthropic:claude-sonnet-4-6'],
        ['event', 'waiting', 'jobId', handle.id],
      ]);
    }
  });

  it("places a fair lane's job in BullMQ's prioritized set as a prioritized Queue.add would, with its fair place kept beside it", async () => {
    const prefix = await fleetPrefix();
    const k = laneKeys(prefix, 'normal');
    const handle = await producer(prefix).enqueue(job({ priority: 'NORMAL', tenant: 'acme' }));
    expect(await admin.llen(k.wait)).toBe(0);
    const score = Number(await admin.zscore(k.prioritized, handle.id));
    const stored = await admin.hgetall(`${k.jobKeyPrefix}${handle.id}`);
    // BullMQ's layout: priority x 2^32 + a counter; the priority stored on the job as BullMQ reads it.
    expect(Math.floor(score / 2 ** 32)).toBe(Number(stored.priority));
    expect(Number(stored.priority)).toBeGreaterThanOrEqual(1);
    expect(stored).toMatchObject({ hrRound: expect.any(String), hrLow: String(score % 2 ** 32) });
    expect(await admin.zscore(k.marker, '0')).toBe('0');
    const got = await producer(prefix).getJob(handle.id);
    expect(got?.state).toBe('waiting');
  });

  it('shares one connection among the producers of a process, and batches their enqueues together', async () => {
    // A Redis of its own, so the connections counted are this test's.
    const own = await startEmbeddedRedis();
    const ownAdmin = new Redis(own.url);
    open.push({ close: async () => { ownAdmin.disconnect(); await own.stop(); } });
    const connections = async () => String(await ownAdmin.client('LIST')).split('\n').filter((line: string) => line.trim() !== '').length;
    const scriptCalls = async () => {
      const stats = await ownAdmin.info('commandstats');
      return [...stats.matchAll(/cmdstat_(?:eval|evalsha):calls=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    };
    await fleetPrefix('hr', ownAdmin);
    const producers = Array.from({ length: 8 }, () => new Producer({ redis: own.url }));
    await producers[0]!.enqueue(job());
    // This one and the shared command connection, and the critical lane's reader (the results of
    // the producers' own jobs come on it).
    await waitUntil(async () => (await connections()) === 3);

    // Eight producers, one enqueue each, at once: from an idle connection, two script calls.
    const calls = await scriptCalls();
    const handles = await Promise.all(producers.map((p) => p.enqueue(job({ priority: 'NORMAL' }))));
    expect(await scriptCalls()).toBe(calls + 2);
    expect(new Set(handles.map((h) => h.id)).size).toBe(8);
    expect(await waiting(ownAdmin, laneKeys('hr', 'normal'))).toBe(8);

    // The connection outlives all but the last producer to close.
    await Promise.all(producers.slice(1).map((p) => p.close()));
    await expect(producers[0]!.enqueue(job())).resolves.toMatchObject({ lane: 'critical' });
    // This one, the shared command connection, and producer 0's readers of the two lanes it used.
    expect(await connections()).toBe(4);
    await producers[0]!.close();
    await waitUntil(async () => (await connections()) === 1);
    // A producer built afterwards opens a connection again.
    const later = new Producer({ redis: own.url });
    await expect(later.enqueue(job())).resolves.toMatchObject({ lane: 'critical' });
    await later.close();
  });

  it('refuses run() with a signal already aborted before it enqueues: nothing is written, nothing can run', async () => {
    const prefix = await fleetPrefix();
    const p = producer(prefix);
    await p.run(job(), { timeoutMs: 200 }).catch(() => undefined);
    const before = (await keysUnder(prefix)).sort();
    await expect(p.run(job(), { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' });
    expect((await keysUnder(prefix)).sort()).toEqual(before);
  });

  it('refuses every call after close() with CLOSED', async () => {
    const prefix = await fleetPrefix();
    const p = new Producer({ redis: redis.url, prefix });
    const handle = await p.enqueue(job());
    await p.close();
    for (const call of [() => p.enqueue(job()), () => p.run(job()), () => p.stream(job()), () => p.getJob(handle.id), () => p.cancel(handle.id), () => handle.result()]) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ClosedError);
      expect(err).toMatchObject({ code: 'CLOSED' });
    }
    await p.close();
  });

  it('rejects with CLOSED a result() still waiting when its producer closes, rather than leave it to its timeout', async () => {
    const prefix = await fleetPrefix();
    const p = new Producer({ redis: redis.url, prefix });
    const handle = await p.enqueue(job());
    // No worker runs it: the wait would last its whole (long) timeout.
    const waiting = handle.result({ timeoutMs: 3_600_000 }).then(() => undefined, (e: unknown) => e);
    const alsoWaiting = p.handleOf(handle.id).result({ timeoutMs: 3_600_000 }).then(() => undefined, (e: unknown) => e);
    await p.close();
    for (const err of await Promise.all([waiting, alsoWaiting])) {
      expect(err).toBeInstanceOf(ClosedError);
      expect(err).toMatchObject({ code: 'CLOSED', message: expect.stringContaining(handle.id) });
    }
  });

  it('rejects CLOSED, not REDIS_UNAVAILABLE nor an ioredis error, every call in flight when its producer closes', async () => {
    const prefix = await fleetPrefix();
    const calls = (p: Producer) => [
      p.enqueue(job()),
      p.run(job(), { timeoutMs: 60_000 }),
      p.stream(job()).then(async (s) => {
        for await (const _ of s) void _;
      }),
      p.getJob('high.x'),
      p.cancel('high.x'),
    ];
    // Closed before its connection is ready, and closed once connected with the calls' enqueues out.
    const cold = new Producer({ redis: redis.url, prefix });
    const coldCalls = calls(cold);
    await cold.close();
    for (const err of await Promise.all(coldCalls.map((c) => c.then(() => undefined, (e: unknown) => e)))) expect(err).toBeInstanceOf(ClosedError);
    const warm = new Producer({ redis: redis.url, prefix });
    await warm.getJob('high.x');
    const [, run, stream] = calls(warm);
    await warm.close();
    for (const err of await Promise.all([run, stream].map((c) => c!.then(() => undefined, (e: unknown) => e)))) expect(err).toBeInstanceOf(ClosedError);
  });

  it('fails fast with REDIS_UNAVAILABLE when Redis is down', async () => {
    const port = await freePort();
    const p = new Producer({ redis: `redis://127.0.0.1:${port}`, connectTimeoutMs: 1_000 });
    open.push(p);
    const started = Date.now();
    await expect(p.enqueue(job())).rejects.toBeInstanceOf(RedisUnavailableError);
    // The bound is the connect timeout, not a speed goal: enqueue must not hang.
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('says once that Redis is unavailable, from every call that needs it', async () => {
    const port = await freePort();
    const p = new Producer({ redis: `redis://127.0.0.1:${port}`, connectTimeoutMs: 1_000 });
    open.push(p);
    for (const call of [() => p.enqueue(job()), () => p.run(job()), () => p.getJob('high.x'), () => p.cancel('high.x')]) {
      const err = await call().then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(RedisUnavailableError);
      expect((err as Error).message).toMatch(/^Redis is unavailable: /);
      // The connect error was mapped twice: "Redis is unavailable: Redis is unavailable: connect ECONNREFUSED".
      expect((err as Error).message).not.toMatch(/^Redis is unavailable: Redis is unavailable/);
    }
  });

  it("rejects a result's wait TIMEOUT at its timeout when the producer never reached Redis, saying so, and closes", async () => {
    const port = await freePort();
    const p = new Producer({ redis: `redis://127.0.0.1:${port}`, connectTimeoutMs: 1_000 });
    // The wait used to await the lane's subscription before arming its timeout: it never settled.
    const err = await p.handleOf('high.some-job').result({ timeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect(err).toMatchObject({ code: 'TIMEOUT', timeoutMs: 300 });
    expect((err as Error).cause).toBeInstanceOf(RedisUnavailableError);
    expect((err as Error).message).toMatch(/timed out after 300 ms \(Redis is unavailable: the connection is /);
    // The subscription that never came up must not hold close() either.
    await p.close();
  });

  it('rejects TIMEOUT at its timeout for every wait once Redis died under a connected producer, and closes', async () => {
    const { own, p } = await producerOnItsOwnRedis();
    const handle = await p.enqueue(job());
    // The low lane's subscription comes up while Redis is there; the normal lane's only after.
    await expect(p.handleOf('low.gone').result({ timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
    await own.stop({ kill: true });
    await expect(handle.result({ timeoutMs: 300 })).rejects.toMatchObject({ code: 'TIMEOUT' });
    await expect(p.handleOf('low.some-job').result({ timeoutMs: 300 })).rejects.toMatchObject({ code: 'TIMEOUT', cause: expect.any(RedisUnavailableError) });
    await expect(p.handleOf('normal.some-job').result({ timeoutMs: 300 })).rejects.toMatchObject({ code: 'TIMEOUT', cause: expect.any(RedisUnavailableError) });
    await p.close();
  });

  it('fails enqueue, getJob and cancel REDIS_UNAVAILABLE within connectTimeoutMs while a connected Redis stalls, and works again after', async () => {
    const own = await startEmbeddedRedis();
    try {
      const admin = new Redis(own.url);
      await fleetPrefix('hr', admin);
      const p = new Producer({ redis: own.url, connectTimeoutMs: 500 });
      open.push(p);
      const before = await p.enqueue(job());
      // Redis answers no client for 8 s: the connection stays up, replies just do not come. Each
      // call below fails within its own 500 ms; had it waited out the pause, it would have
      // succeeded instead (the pause outlasts the three calls however slow the machine is).
      await admin.call('CLIENT', 'PAUSE', '8000', 'ALL');
      admin.disconnect();
      for (const call of [() => p.enqueue(job()), () => p.getJob(before.id), () => p.cancel(before.id)]) {
        const err = await call().then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(RedisUnavailableError);
        expect((err as Error).message).toMatch(/no answer within 500 ms/);
      }
      await expect.poll(() => p.enqueue(job()).then(() => true, () => false), { timeout: 20_000, interval: 200 }).toBe(true);
    } finally {
      await own.stop({ kill: true });
    }
  });

  it('withdraws, once Redis answers, an enqueue it failed REDIS_UNAVAILABLE while Redis stalled: a retry is safe', async () => {
    // Redis applies a command it held through a stall when the stall ends: the job the caller was
    // told was not enqueued ran all the same, with nobody waiting, and the caller's retry (the
    // error is retryable) ran it again (through the gateway, a 503 the SDKs retry: two provider
    // calls for one answer).
    const own = await startEmbeddedRedis();
    try {
      const admin = new Redis(own.url);
      const prefix = await fleetPrefix(undefined, admin);
      const k = laneKeys(prefix, 'critical');
      const p = new Producer({ redis: own.url, prefix, connectTimeoutMs: 500 });
      open.push(p);
      const kept = await p.enqueue(job({ idempotencyKey: 'kept' }));
      await admin.call('CLIENT', 'PAUSE', '3000', 'ALL');
      for (const input of [job(), job({ coalesce: true }), job({ idempotencyKey: 'kept' })]) {
        await expect(p.enqueue(input)).rejects.toBeInstanceOf(RedisUnavailableError);
      }
      // The plain and the coalesced job are removed, the repeat's share of the kept job given back.
      await expect.poll(async () => waitingIds(admin, k), { timeout: 20_000, interval: 100 }).toEqual([kept.id]);
      await expect.poll(async () => admin.hget(`${k.jobKeyPrefix}${kept.id}`, 'hrJoins'), { timeout: 20_000, interval: 100 }).toBe('0');
      admin.disconnect();
    } finally {
      await own.stop({ kill: true });
    }
  });

  it('fails fast when Redis dies under a connected producer', async () => {
    const { own, p } = await producerOnItsOwnRedis();
    open.push(p);
    await p.enqueue(job());
    await own.stop({ kill: true });
    const started = Date.now();
    await expect(p.enqueue(job())).rejects.toMatchObject({ code: 'REDIS_UNAVAILABLE' });
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});
