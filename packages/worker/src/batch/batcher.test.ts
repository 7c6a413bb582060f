import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Queue, Worker } from 'bullmq';
import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addToLane, cancelIfNotStarted, cancelledFailure, createRedis, failureOf, fleetKeys, laneKeys, type LlmJob, parseConfig, publishFleetSettings, FleetStatsWriter, createLogger, type Logger } from '@headroom/queue';
import { type Simulator, startSimulator } from '@headroom/simulator';
import { WorkerMetrics } from '../metrics.js';
import { AnthropicBatchApi } from './anthropic-batch-api.js';
import { OpenAIBatchApi } from './openai-batch-api.js';
import { ClaimStore } from './claim-store.js';
import { customIdOf } from './custom-id.js';
import { MAX_BATCH_REQUEUES } from './job-settler.js';
import { Batcher } from './batcher.js';
import { redisForFile } from '@headroom/testing/vitest';

const MODEL = 'claude-haiku-4-5';
/** Configured, but no batch API for its provider is: its jobs are failed as unusable. */
const OPENAI_MODEL = 'gpt-4o-mini';
/** Configured here, unknown to the simulator: its batch entries come back `not_found_error`, a request error. */
const RETIRED_MODEL = 'claude-retired-1';
const db = redisForFile();
let sim: Simulator;

beforeAll(async () => {
  sim = await startSimulator({ latencyMs: 0, batchCompletionMs: 200 });
});
afterAll(async () => {
  await sim.close();
});

async function fleet(maxWaitMs: number, over: { sim?: Simulator; pollIntervalMs?: number; parkLockMs?: number; maxRequests?: number; submitTimeoutMs?: number; logger?: Logger; openai?: boolean } = {}) {
  const prefix = `t${randomUUID().slice(0, 8)}`;
  const provider = over.sim ?? sim;
  const config = parseConfig({
    redis: { prefix },
    models: { [MODEL]: { provider: 'anthropic', pricing: { inputPerMTok: 1, outputPerMTok: 5 } }, [RETIRED_MODEL]: { provider: 'anthropic' }, [OPENAI_MODEL]: { provider: 'openai' } },
    dispatch: { lockMs: 5_000, stalledIntervalMs: 1_000 },
    batch: { maxRequests: over.maxRequests ?? 100, maxWaitMs, pollIntervalMs: over.pollIntervalMs ?? 100, leaseMs: 1_000, parkLockMs: over.parkLockMs ?? 30_000, submitTimeoutMs: over.submitTimeoutMs ?? 5_000 },
  });
  await publishFleetSettings(db.redis, config);
  const k = laneKeys(prefix, 'batch');
  const queue = new Queue(k.queueName, { connection: db.redis, prefix: k.bullPrefix });
  const batcher = (id: string, as: { apiKey?: string; now?: () => number } = {}) =>
    new Batcher({
      config,
      redisUrl: db.url,
      redis: db.redis,
      workerId: id,
      apis: {
        anthropic: new AnthropicBatchApi({ apiKey: as.apiKey ?? 'sk-batcher-test', baseURL: provider.url, timeoutMs: 5_000 }),
        ...(over.openai ? { openai: new OpenAIBatchApi({ apiKey: as.apiKey ?? 'sk-batcher-test', baseURL: `${provider.url}/v1`, timeoutMs: 5_000 }) } : {}),
      },
      metrics: new WorkerMetrics({ defaultMetrics: false }),
      stats: new FleetStatsWriter(db.redis, prefix),
      logger: over.logger ?? createLogger({ level: 'silent' }),
      ...(as.now ? { now: as.now } : {}),
    });
  const batchJob = (i: number, provider: 'anthropic' | 'openai' = 'anthropic', tenant?: string, model?: string): LlmJob =>
    ({
      priority: 'LOW',
      sla: 'none',
      provider,
      ...(tenant ? { tenant } : {}),
      request: { model: model ?? (provider === 'anthropic' ? MODEL : OPENAI_MODEL), max_tokens: 16, messages: [{ role: 'user', content: `job ${i}` }] },
    }) as LlmJob;
  /** Through admission, as a producer adds them: each job's bytes and tenant are counted. */
  const admit = async (n: number, provider: 'anthropic' | 'openai' = 'anthropic', tenant: string | undefined = 'acme', model?: string) => {
    const entries = Array.from({ length: n }, (_, i) => ({ jobId: `batch.${randomUUID()}`, job: batchJob(i, provider, tenant, model), opts: {} }));
    const added = await addToLane(db.redis, queue, prefix, 'batch', entries);
    expect(added.every((a) => !(a instanceof Error))).toBe(true);
    return entries.map((e) => e.jobId);
  };
  const add = (n: number) => admit(n, 'anthropic', undefined);
  /** Around admission, as another tool's `Queue.add` writes a job: nothing counts it. */
  const addAround = (i: number) => queue.add(`anthropic:${MODEL}`, batchJob(i), { jobId: `batch.${randomUUID()}` });
  return { prefix, keys: fleetKeys(prefix), lane: k, queue, batcher, add, admit, addAround };
}

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A simulator of the test's own (its faults and clock touch no other test), closed after `run`. */
async function withSimulator(options: Parameters<typeof startSimulator>[0], run: (sim: Simulator) => Promise<void>): Promise<void> {
  const own = await startSimulator(options);
  try {
    await run(own);
  } finally {
    await own.close();
  }
}

/** A warn-level logger whose lines the test reads; `onLine` sees each as it is written. */
function capturedLogger(onLine: (line: string) => void = () => {}): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'warn',
    destination: new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        onLine(String(chunk));
        done();
      },
    }),
  });
  return { logger, lines };
}

describe('Batcher', () => {
  it('hands gathered, unsubmitted jobs back to the lane on a graceful stop, and the lease over at once', async () => {
    const { keys, queue, batcher, add } = await fleet(60_000);
    const a = batcher('a');
    await a.start();
    await until(async () => a.isLeader);
    await add(10);
    // Filed in one claim (jobs go active a moment before they are filed).
    await until(async () => {
      const claims = await db.redis.zrange(keys.batchClaims, '0', '-1');
      return claims.length === 1 && (await db.redis.scard(keys.batchClaimJobs(claims[0]!))) === 10;
    });
    expect(await queue.getActiveCount()).toBe(10);

    await a.stop(1_000);
    expect(await queue.getWaitingCount()).toBe(10);
    expect(await db.redis.zcard(keys.batchClaims)).toBe(0);
    expect(await db.redis.get(keys.batchLeader)).toBeNull(); // released: no wait for the TTL

    const b = batcher('b');
    await b.start();
    await until(async () => b.isLeader);
    expect(await db.redis.get(keys.batchLeader)).toBe('b|2');
    await b.stop(1_000);
    await queue.close();
  });

  it('submits partial batches after maxWaitMs and completes every job from its entry', async () => {
    const { keys, queue, batcher, add } = await fleet(300);
    const before = sim.stats().batches.anthropic.created;
    const a = batcher('a');
    await a.start();
    const jobs = await add(130);
    await until(async () => (await queue.getCompletedCount()) === 130);
    expect(sim.stats().batches.anthropic.created - before).toBe(2); // 100 + 30
    const done = await queue.getJob(jobs[0]!);
    expect(done?.returnvalue).toMatchObject({ provider: 'anthropic', model: MODEL, attempts: 1, cost: { batch: true } });
    // The claim's records go once its jobs have ended (claim-steps: end every job, then remove the
    // claim): nothing is left behind, a moment after the last completion.
    await until(async () => (await db.redis.hlen(keys.batches)) === 0 && (await db.redis.zcard(keys.batchClaims)) === 0);
    await a.stop(1_000);
    await queue.close();
  });

  it('keeps parked jobs locked for a batch that outlasts parkLockMs, and sends each job once', async () => {
    // A batch running longer than the park lock (10 s, the shortest allowed), polled every second:
    // the leader's renewals, which fell on the poll's tick, must still reach the polled claim.
    await withSimulator({ latencyMs: 0, batchCompletionMs: 16_000 }, async (slow) => {
      const { queue, batcher, add } = await fleet(200, { sim: slow, pollIntervalMs: 1_000, parkLockMs: 10_000 });
      const a = batcher('a');
      await a.start();
      const jobs = await add(5);
      await until(async () => (await queue.getCompletedCount()) === 5, 60_000);
      expect(slow.stats().batches.anthropic.requests).toBe(5);
      expect(slow.stats().batches.anthropic.created).toBe(1);
      expect((await queue.getJob(jobs[0]!))?.returnvalue).toMatchObject({ model: MODEL, cost: { batch: true } });
      await a.stop(1_000);
      await queue.close();
    });
  }, 90_000);

  it('settles every job of a batch whose results file has a line cut short: the others complete, its job goes back to the lane', async () => {
    await withSimulator({ latencyMs: 0, batchCompletionMs: 200 }, async (garbling) => {
      const { keys, queue, batcher, add } = await fleet(300, { sim: garbling });
      const jobs = await add(10);
      // Its line comes back cut short from every batch it is sent in.
      const garbled = jobs[4]!;
      garbling.injectBatchFaults({ garbled: [customIdOf('anthropic', garbled)] });
      const a = batcher('a');
      await a.start();
      await until(async () => (await queue.getCompletedCount()) === 9 && (await queue.getFailedCount()) === 1, 30_000);
      // Each batch said nothing readable about it: back to the lane each time, until BATCH_LOST.
      const lost = await queue.getJob(garbled);
      expect(failureOf(lost!).code).toBe('BATCH_LOST');
      expect(garbling.stats().batches.anthropic.created).toBe(1 + MAX_BATCH_REQUEUES);
      expect(garbling.stats().batches.anthropic.requests).toBe(10 + MAX_BATCH_REQUEUES);
      for (const id of jobs.filter((id) => id !== garbled)) expect((await queue.getJob(id))?.returnvalue).toMatchObject({ model: MODEL, cost: { batch: true } });
      await until(async () => (await db.redis.zcard(keys.batchClaims)) === 0);
      await a.stop(1_000);
      await queue.close();
    });
  }, 60_000);

  it('sends a job whose entry errored on the provider side (api_error) again in a later batch, and fails a request error at once', async () => {
    await withSimulator({ latencyMs: 0, batchCompletionMs: 200 }, async (flaky) => {
      // A resend waits maxWaitMs in its claim: seconds for the test to disarm the fault first.
      const { keys, queue, batcher, add, admit } = await fleet(2_000, { sim: flaky });
      const jobs = await add(5);
      const [retired] = await admit(1, 'anthropic', undefined, RETIRED_MODEL);
      const unlucky = jobs[2]!;
      flaky.injectBatchFaults({ errored: [customIdOf('anthropic', unlucky)] });
      const a = batcher('a');
      await a.start();
      // An entry's fate is drawn when its batch is made: the first two (one per model) carry the fault, later ones not.
      await until(async () => flaky.stats().batches.anthropic.created === 2, 30_000);
      flaky.clearFaults();
      // Its first batch answered it `api_error`: it went back to the lane for a later batch.
      await until(async () => ((await queue.getJob(unlucky))?.progress as { batchRequeues?: number } | undefined)?.batchRequeues === 1, 30_000);
      await until(async () => (await queue.getCompletedCount()) === 5 && (await queue.getFailedCount()) === 1, 30_000);
      // Its attempts count both batches it went out in.
      expect((await queue.getJob(unlucky))?.returnvalue).toMatchObject({ model: MODEL, attempts: 2, cost: { batch: true } });
      // A request error is the request's own: failed from its first batch, never sent again.
      const failed = await queue.getJob(retired!);
      expect(failureOf(failed!)).toEqual({ code: 'BATCH_ERRORED', message: `not_found_error: model: ${RETIRED_MODEL}` });
      expect((failed!.progress as { batchRequeues?: number }).batchRequeues).toBeUndefined();
      // The first batches (one per model) and one more for the job sent again; six requests and one resend.
      expect(flaky.stats().batches.anthropic.requests).toBe(7);
      await until(async () => (await db.redis.zcard(keys.batchClaims)) === 0);
      await a.stop(1_000);
      await queue.close();
    });
  }, 60_000);

  it('fails a job whose entries keep erroring on the provider side BATCH_ERRORED with the last error, after its resends', async () => {
    await withSimulator({ latencyMs: 0, batchCompletionMs: 200 }, async (failing) => {
      const { queue, batcher, add } = await fleet(300, { sim: failing });
      const [doomed] = await add(1);
      failing.injectBatchFaults({ errored: [customIdOf('anthropic', doomed!)] });
      const a = batcher('a');
      await a.start();
      await until(async () => (await queue.getFailedCount()) === 1, 60_000);
      const failed = (await queue.getJob(doomed!))!;
      expect(failureOf(failed)).toEqual({ code: 'BATCH_ERRORED', message: `api_error: Internal server error, ${MAX_BATCH_REQUEUES + 1} times` });
      expect(failed.progress).toMatchObject({ attempts: MAX_BATCH_REQUEUES + 1, batchRequeues: MAX_BATCH_REQUEUES });
      expect(failing.stats().batches.anthropic).toMatchObject({ created: 1 + MAX_BATCH_REQUEUES, requests: 1 + MAX_BATCH_REQUEUES });
      await a.stop(1_000);
      await queue.close();
    });
  }, 90_000);

  it("uploads a new OpenAI input file once the claim lost a job since its last upload: the lost job is not sent twice", async () => {
    await withSimulator({ latencyMs: 0, batchCompletionMs: 200 }, async (own) => {
      const { prefix, lane, queue, batcher, admit } = await fleet(200, { sim: own, openai: true });
      const ids = await admit(3, 'openai');
      // What a leader left behind: a claim of the three jobs, parked under its token, its input
      // file uploaded (the create then answered 429, say), and then one job's lock lapsed.
      const token = 'hrb-1-gone';
      const takerRedis = createRedis(db.url, 'worker');
      const taker = new Worker(lane.queueName, null, { connection: takerRedis, prefix: lane.bullPrefix, autorun: false, lockDuration: 60_000, skipLockRenewal: true });
      const taken = [await taker.getNextJob(token), await taker.getNextJob(token), await taker.getNextJob(token)];
      expect(taken.map((j) => j?.id).sort()).toEqual([...ids].sort());
      await taker.close(true);
      takerRedis.disconnect();
      const lines = taken.map((j) => JSON.stringify({ custom_id: j!.id, method: 'POST', url: '/v1/chat/completions', body: (j!.data as LlmJob).request }));
      const files = new OpenAI({ apiKey: 'sk-batcher-test', baseURL: `${own.url}/v1` }).files;
      const file = await files.create({ file: await toFile(Buffer.from(`${lines.join('\n')}\n`), 'claim.jsonl'), purpose: 'batch' });
      const store = new ClaimStore(db.redis, prefix);
      const claimId = 'left-behind';
      await store.create({ id: claimId, provider: 'openai', model: OPENAI_MODEL, token, fence: 1, createdAt: Date.now(), oldestAt: Date.now(), jobIds: new Set(ids) });
      await store.setFileId(claimId, file.id);
      const lapsed = ids[1]!;
      await db.redis.del(`${lane.jobKeyPrefix}${lapsed}:lock`);

      const a = batcher('a');
      await a.start();
      await until(async () => (await queue.getCompletedCount()) === 3, 30_000);
      // The claim went out with the two jobs it still held, the lapsed one in a batch of its own
      // from the lane: three requests, one per job. Reusing the file sent the lapsed one twice.
      expect(own.stats().batches.openai.requests).toBe(3);
      for (const id of ids) expect((await queue.getJob(id))?.returnvalue).toMatchObject({ model: OPENAI_MODEL, cost: { batch: true } });
      await a.stop(1_000);
      await queue.close();
    });
  }, 60_000);

  it('cancels a job its claim holds until the batch is sent (removed, its counts given back, not sent), and refuses once it is', async () => {
    await withSimulator({ latencyMs: 0, batchCompletionMs: 10_000 }, async (slow) => {
      // A claim fills to 4 (the assembler's count: a cancelled job keeps its place) and waits for nothing else.
      const { prefix, keys, lane, queue, batcher, admit } = await fleet(60_000, { sim: slow, maxRequests: 4 });
      const first = await admit(3);
      const a = batcher('a');
      await a.start();
      await until(async () => {
        const claims = await db.redis.zrange(keys.batchClaims, '0', '-1');
        return claims.length === 1 && (await db.redis.scard(keys.batchClaimJobs(claims[0]!))) === 3;
      });
      expect(await queue.getActiveCount()).toBe(3);
      const cancelled = first[1]!;
      // In an open claim: nothing was sent, so it goes as a waiting job would.
      expect(await cancelIfNotStarted(db.redis, prefix, cancelled)).toBe('removed');
      expect(await queue.getJob(cancelled)).toBeUndefined();
      expect(await cancelledFailure(db.redis, prefix, cancelled)).toMatchObject({ code: 'CANCELLED' });
      expect(await db.redis.hget(lane.usage, 'tenant:acme')).toBe('2');
      expect(await queue.getActiveCount()).toBe(2);

      // One more job fills the claim: its batch goes out with the three jobs it still holds.
      const [last] = await admit(1);
      await until(async () => (await db.redis.hlen(keys.batches)) === 1, 30_000);
      expect(slow.stats().batches.anthropic).toMatchObject({ created: 1, requests: 3 });
      // Sent: one request of a batch cannot be cancelled, so the job is left to run to its end.
      expect(await cancelIfNotStarted(db.redis, prefix, first[0]!)).toBe('started');
      await until(async () => (await queue.getCompletedCount()) === 3, 60_000);
      for (const id of [first[0]!, first[2]!, last!]) expect((await queue.getJob(id))?.returnvalue).toMatchObject({ model: MODEL, cost: { batch: true } });
      expect(await db.redis.hgetall(lane.usage)).toEqual({});
      await until(async () => (await db.redis.zcard(keys.batchClaims)) === 0);
      await a.stop(1_000);
      await queue.close();
    });
  }, 90_000);

  it('sends the jobs of a batch it cannot read 6 h past its 24 h window back to the lane, instead of parking them for good', async () => {
    let onLine = (_line: string) => {};
    const { logger, lines } = capturedLogger((line) => onLine(line));
    await withSimulator({ latencyMs: 0, batchCompletionMs: 10_000 }, async (slow) => {
      const { keys, queue, batcher, add } = await fleet(200, { sim: slow, logger });
      const a = batcher('a');
      await a.start();
      const jobs = await add(5);
      await until(async () => (await db.redis.hlen(keys.batches)) === 1);
      await a.stop(1_000);
      // The next leader reads with a key of another workspace (every read of the batch is a 404),
      // 31 h after the submission by its clock, and 7 h later from its second failed read on (the
      // failure is logged before it is counted: the first read's failure starts the clock at 31 h).
      let offsetMs = 31 * 3600_000;
      let failedReads = 0;
      onLine = (line) => {
        if (line.includes('batch step failed') && ++failedReads === 2) offsetMs = 38 * 3600_000;
      };
      const b = batcher('b', { apiKey: 'sk-other-workspace', now: () => Date.now() + offsetMs });
      await b.start();
      await until(async () => (await queue.getCompletedCount()) === 5, 60_000);
      expect(lines.some((line) => line.includes('batch unreadable past its 24 h window'))).toBe(true);
      // Sent again, in a batch of its own that the new key can read.
      expect(slow.stats().batches.anthropic.created).toBe(2);
      // The claim's records go a moment after its last job ends (claim-steps: end every job, then remove the claim).
      await until(async () => (await db.redis.hlen(keys.batches)) === 0);
      for (const id of jobs) expect(await queue.getJob(id)).toMatchObject({ progress: { batchRequeues: 1 }, returnvalue: { model: MODEL, cost: { batch: true } } });
      await b.stop(1_000);
      await queue.close();
    });
  }, 90_000);

  it('finds each unanswered Anthropic batch for its own claim when several of one count were sent: every job goes out once', async () => {
    // Every create answer comes after the submission deadline: each claim must find its batch by
    // creation time and request count, and four claims of 5 requests each share the count. Sent
    // at once, claims took each other's batches, proved them not theirs at settlement and sent
    // every job again (20 jobs, 50 requests billed in one run).
    await withSimulator({ latencyMs: 0, batchCompletionMs: 200 }, async (held) => {
      held.injectBatchFaults({ holdCreateReplyMs: 3_000 });
      const { queue, batcher, add } = await fleet(60_000, { sim: held, maxRequests: 5, submitTimeoutMs: 1_000 });
      const jobs = await add(20);
      const a = batcher('a');
      await a.start();
      await until(async () => (await queue.getCompletedCount()) + (await queue.getFailedCount()) === 20, 120_000);
      expect(held.stats().batches.anthropic).toMatchObject({ created: 4, requests: 20 });
      for (const id of jobs) expect((await queue.getJob(id))?.returnvalue).toMatchObject({ model: MODEL, cost: { batch: true } });
      // None went back to the lane: each claim's batch named its own jobs.
      for (const id of jobs) expect(((await queue.getJob(id))?.progress as { batchRequeues?: number } | undefined)?.batchRequeues ?? 0).toBe(0);
      await a.stop(1_000);
      await queue.close();
    });
  }, 150_000);

  it('gives back what admission counted for each job in the call that ends it, completed or failed', async () => {
    const { lane, queue, batcher, admit } = await fleet(200);
    const completed = await admit(5);
    const failed = await admit(2, 'openai');
    const counted = await db.redis.hgetall(lane.usage);
    expect(Number(counted.bytes)).toBeGreaterThan(0);
    expect(counted['tenant:acme']).toBe('7');
    const a = batcher('a');
    await a.start();
    await until(async () => (await queue.getCompletedCount()) === 5 && (await queue.getFailedCount()) === 2);
    expect((await queue.getJob(failed[0]!))?.failedReason).toContain('no batch API for "openai"');
    expect((await queue.getJob(completed[0]!))?.returnvalue).toMatchObject({ model: MODEL, cost: { batch: true } });
    // Nothing left counted: ending a job gives its counts back (finishJob), so a tenant's cap
    // and the lane's byte cap see the room at once, not after the lane upkeep.
    expect(await db.redis.hlen(lane.unfinished)).toBe(0);
    expect(await db.redis.hgetall(lane.usage)).toEqual({});
    await a.stop(1_000);
    await queue.close();
  });

  it('looks at an empty lane less often the longer it stays empty (up to every 2 s), and takes a job that comes', async () => {
    const { lane, queue, batcher, add } = await fleet(200);
    const a = batcher('a');
    await a.start();
    await until(async () => a.isLeader);
    // From a client already connected: a fresh one's own ready check would race MONITOR's reply.
    const base = db.redis.duplicate();
    await base.ping();
    const monitor = await base.monitor();
    base.disconnect();
    const looks: number[] = [];
    // The ready-lanes script over the BATCH lane alone: five keys, the lane's wait list first.
    monitor.on('monitor', (time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'evalsha' && args[2] === '5' && args[3] === lane.wait) looks.push(Number(time) * 1000);
    });
    try {
      await expect.poll(() => looks.length, { timeout: 15_000, interval: 100 }).toBeGreaterThanOrEqual(5);
    } finally {
      monitor.disconnect();
    }
    const gaps = looks.slice(1).map((t, i) => t - looks[i]!);
    // Four looks a second, before; a slow machine only makes the gaps longer.
    expect(gaps.at(-1)).toBeGreaterThanOrEqual(1_500);
    const [id] = await add(1);
    await until(async () => (await queue.getJob(id!))?.returnvalue !== undefined && (await queue.getJob(id!))?.returnvalue !== null, 15_000);
    await a.stop(1_000);
    await queue.close();
  });

  it("fails a well-formed job added around admission (BullMQ's Queue.add) JOB_INVALID and never submits it; a job counted by a version before the mark runs", async () => {
    const { lane, queue, batcher, admit, addAround } = await fleet(200);
    const before = sim.stats().batches.anthropic.created;
    const around = await addAround(0);
    // What a job admitted before admission marked its options looks like: counted, unmarked.
    const older = await addAround(1);
    await db.redis.hset(lane.unfinished, older.id!, '100|');
    const admitted = await admit(1);
    const a = batcher('a');
    await a.start();
    await until(async () => (await queue.getFailedCount()) === 1 && (await queue.getCompletedCount()) === 2);
    expect((await queue.getJob(around.id!))?.failedReason).toMatch(/^JOB_INVALID: not admitted: the job reached its lane without Headroom's admission/);
    expect((await queue.getJob(older.id!))?.returnvalue).toMatchObject({ model: MODEL, cost: { batch: true } });
    expect((await queue.getJob(admitted[0]!))?.returnvalue).toMatchObject({ model: MODEL, cost: { batch: true } });
    // One batch, of the two jobs admitted.
    expect(sim.stats().batches.anthropic.created - before).toBe(1);
    await a.stop(1_000);
    await queue.close();
  });

  it('keeps the jobs taken beside one whose take throws: they go to their batch in the same round, none stalled', async () => {
    const { logger, lines } = capturedLogger();
    const { lane, queue, batcher, admit } = await fleet(200, { logger });
    const before = sim.stats().batches.anthropic.created;
    const admitted = await admit(3);
    // An id on the wait list whose key is a string, not a job's hash: BullMQ's fetch script moves
    // it to active and locks it, then Redis refuses to write the hash (WRONGTYPE) and the take
    // throws, an error the lane worker cannot take a job from. Put at the end of the wait list it
    // is taken first, beside the three admitted ones.
    const unreadable = `batch.${randomUUID()}`;
    await db.redis.set(`${lane.jobKeyPrefix}${unreadable}`, 'not a job');
    await db.redis.rpush(lane.wait, unreadable);
    const a = batcher('a');
    await a.start();
    await until(async () => (await queue.getCompletedCount()) === 3);
    // Not left locked in active for the stalled check to give back: never stalled, one batch.
    for (const id of admitted) expect(await queue.getJob(id)).toMatchObject({ stalledCounter: 0, returnvalue: { model: MODEL, cost: { batch: true } } });
    expect(sim.stats().batches.anthropic.created - before).toBe(1);
    const warned = lines.filter((line) => line.includes('could not take some batch jobs'));
    expect(warned).toHaveLength(1);
    expect(JSON.parse(warned[0]!)).toMatchObject({ lane: 'batch', failedTakes: 1, taken: 3 });
    await a.stop(1_000);
    await queue.close();
  });
});
