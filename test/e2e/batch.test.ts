/**
 * Batch routing end to end, on a real Redis, the simulator and the official SDKs: no-SLA jobs go
 * out as Anthropic Message Batches and OpenAI Batches grouped per model, each job ends with its
 * own entry, failed entries fail exactly their jobs, and a leader SIGKILLed between a provider
 * accepting a batch and the batch id being recorded neither loses a job nor submits twice.
 */
import { randomUUID } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobFailedError, Producer, type LlmJobInput, type LlmResult } from '@headroom/producer-sdk';
import { fleetKeys, handOffJobId, idempotentJobId, laneKeys, parseConfig, type HeadroomConfigInput, createLogger, readFleetStats } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { customIdOf, MAX_BATCH_REQUEUES, startWorker, type RunningWorker } from '@headroom/worker';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const GPT = 'gpt-4.1-mini';
const LIMITS = { rpm: 100_000, itpm: 10_000_000, otpm: 10_000_000, tpm: 10_000_000 };
const PRICING: Record<string, { inputPerMTok: number; outputPerMTok: number }> = {
  [SONNET]: { inputPerMTok: 3, outputPerMTok: 15 },
  [HAIKU]: { inputPerMTok: 1, outputPerMTok: 5 },
  [GPT]: { inputPerMTok: 0.4, outputPerMTok: 1.6 },
};
const ENV = { BATCH_TEST_ANTHROPIC_KEY: 'sk-ant-batch-test', BATCH_TEST_OPENAI_KEY: 'sk-openai-batch-test' };

let redis: EmbeddedRedis;
let sim: Simulator;
let admin: Redis;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
  sim = await startSimulator({
    latencyMs: 0,
    batchCompletionMs: 1_000,
    models: {
      [SONNET]: { provider: 'anthropic', limits: LIMITS },
      [HAIKU]: { provider: 'anthropic', limits: LIMITS },
      [GPT]: { provider: 'openai', limits: LIMITS },
    },
  });
});
afterAll(async () => {
  admin?.disconnect();
  await sim?.close();
  await redis?.stop();
});

function fleetConfig(prefix: string, batch: NonNullable<HeadroomConfigInput['batch']>): HeadroomConfigInput {
  return {
    redis: { prefix },
    providers: {
      anthropic: { baseURL: sim.url, apiKeyEnv: 'BATCH_TEST_ANTHROPIC_KEY' },
      openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: 'BATCH_TEST_OPENAI_KEY' },
    },
    models: Object.fromEntries([SONNET, HAIKU, GPT].map((m) => [m, { provider: m === GPT ? 'openai' : 'anthropic', pricing: PRICING[m] }])),
    dispatch: { lockMs: 5_000, stalledIntervalMs: 2_000, shutdownGraceMs: 2_000 },
    batch,
  };
}

const noSla = (model: string, key: string, i: number): LlmJobInput =>
  (model === GPT
    ? { priority: 'LOW', sla: 'none', provider: 'openai', idempotencyKey: key, metadata: { i }, request: { model, max_completion_tokens: 40, messages: [{ role: 'user', content: `Batch question ${i}: classify this ticket.` }] } }
    : { priority: 'LOW', sla: 'none', provider: 'anthropic', idempotencyKey: key, metadata: { i }, request: { model, max_tokens: 40, messages: [{ role: 'user', content: `Batch question ${i}: classify this ticket.` }] } }) as LlmJobInput;

/** The text a direct (interactive) call gets for the same request: the simulator answers deterministically. */
async function directText(job: LlmJobInput): Promise<string> {
  if (job.provider === 'anthropic') {
    const client = new Anthropic({ apiKey: 'sk-direct', baseURL: sim.url, maxRetries: 0 });
    const msg = await client.messages.create(job.request as unknown as Anthropic.MessageCreateParamsNonStreaming);
    return (msg.content[0] as { text: string }).text;
  }
  const client = new OpenAI({ apiKey: 'sk-direct', baseURL: `${sim.url}/v1`, maxRetries: 0 });
  const completion = await client.chat.completions.create(job.request as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
  return completion.choices[0]?.message.content ?? '';
}

function textOf(result: LlmResult): string {
  const body = result.response as { content?: { text: string }[]; choices?: { message: { content: string } }[] };
  return body.content?.[0]?.text ?? body.choices?.[0]?.message.content ?? '';
}

async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => { while (next < items.length) await fn(items[next++]!); }));
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('batch routing', () => {
  it('sends 1000 no-SLA jobs as per-model batches of at most N, each job ending with its own entry', async () => {
    sim.reset();
    const prefix = `b${randomUUID().slice(0, 8)}`;
    const N = 100;
    const config = parseConfig(fleetConfig(prefix, { maxRequests: N, maxWaitMs: 3_000, pollIntervalMs: 300, leaseMs: 2_000, parkLockMs: 60_000, submitTimeoutMs: 10_000 }));
    const workers: RunningWorker[] = [];
    for (const id of ['w1', 'w2']) workers.push(await startWorker({ config, redisUrl: redis.url, env: ENV, id, logger: createLogger({ level: 'silent' }) }));
    const producer = new Producer({ redis: redis.url, prefix });

    // Sonnet and Haiku end in a partial batch: it goes out T after its oldest job.
    const groups = { [SONNET]: 450, [HAIKU]: 150, [GPT]: 400 };
    const jobs = Object.entries(groups).flatMap(([model, n]) => Array.from({ length: n }, (_, i) => noSla(model, `${model}-${i}`, i)));
    const idOf = (job: LlmJobInput) => idempotentJobId('batch', job.idempotencyKey!);
    // Faults are armed by custom_id before the batches exist, and hold for every batch: one errored
    // entry per provider, one expired. Each is the provider's failure, not the request's: the job is
    // sent again in a later batch, MAX_BATCH_REQUEUES times, then fails with the last one.
    const erroredClaude = jobs[7]!;
    const erroredGpt = jobs[600 + 11]!;
    const expiredHaiku = jobs[450 + 3]!;
    sim.injectBatchFaults({ errored: [customIdOf('anthropic', idOf(erroredClaude)), customIdOf('openai', idOf(erroredGpt))], expired: [customIdOf('anthropic', idOf(expiredHaiku))] });

    const handles = new Array<Awaited<ReturnType<Producer['enqueue']>>>(jobs.length);
    await inParallel([...jobs.keys()], 50, async (i) => { handles[i] = await producer.enqueue(jobs[i]!); });
    expect(handles.every((h, i) => h.id === idOf(jobs[i]!) && h.lane === 'batch')).toBe(true);
    const settled = await Promise.allSettled(handles.map((h) => h.result({ timeoutMs: 60_000 })));

    const failures = new Map<string, unknown>();
    settled.forEach((s, i) => { if (s.status === 'rejected') failures.set(handles[i]!.id, s.reason); });
    expect([...failures.keys()].sort()).toEqual([idOf(erroredClaude), idOf(erroredGpt), idOf(expiredHaiku)].sort());
    const sends = MAX_BATCH_REQUEUES + 1;
    expect(failures.get(idOf(erroredClaude))).toMatchObject({ failureCode: 'BATCH_ERRORED', reason: `BATCH_ERRORED: api_error: Internal server error, ${sends} times` });
    expect(failures.get(idOf(erroredGpt))).toMatchObject({ failureCode: 'BATCH_ERRORED', reason: expect.stringMatching(new RegExp(`server_error: The server had an error.*, ${sends} times$`)) });
    expect(failures.get(idOf(expiredHaiku))).toMatchObject({ failureCode: 'BATCH_EXPIRED', reason: expect.stringMatching(new RegExp(`, ${sends} times$`)) });
    for (const f of failures.values()) expect(f).toBeInstanceOf(JobFailedError);
    // One attempt per batch each went out in, as the dashboard's recent jobs read it (0 before).
    for (const id of failures.keys()) expect(JSON.parse((await admin.hget(`${laneKeys(prefix, 'batch').jobKeyPrefix}${id}`, 'progress')) ?? '{}')).toMatchObject({ attempts: sends });

    // At most ceil(n / N) batches per (provider, model) group for its first sends, never more than
    // ceil(1000 / N), and two more for each resend of its failing job: its own batch, and the claim
    // it joins going out early (the job waited past maxWaitMs in its earlier batch already), which
    // can split the group's next batch in two.
    const stats = sim.stats();
    for (const [model, n] of Object.entries(groups)) {
      expect(stats.batchesByModel[model], model).toBeLessThanOrEqual(Math.ceil(n / N) + 2 * MAX_BATCH_REQUEUES);
      expect(stats.batchesByModel[model], model).toBeLessThanOrEqual(Math.ceil(1000 / N) + 2 * MAX_BATCH_REQUEUES);
    }
    expect(stats.batches.anthropic.requests + stats.batches.openai.requests).toBe(1000 + 3 * MAX_BATCH_REQUEUES);
    // Nothing drew from the interactive limits.
    expect(Object.values(stats.models).reduce((a, m) => a + m.admitted, 0)).toBe(0);

    // Each job got its own answer: the same text a direct call for its request gets.
    let totalCost = 0;
    await inParallel([...settled.keys()], 16, async (i) => {
      const s = settled[i]!;
      if (s.status !== 'fulfilled') return;
      const result = s.value;
      const job = jobs[i]!;
      expect(result).toMatchObject({ provider: job.provider, model: job.request.model, attempts: 1, metadata: { i: job.metadata!.i }, cost: { batch: true } });
      const price = PRICING[job.request.model]!;
      const fullPrice = (result.usage.inputTokens * price.inputPerMTok + result.usage.outputTokens * price.outputPerMTok) / 1e6;
      expect(result.cost.usd).toBeCloseTo(fullPrice / 2, 12);
      totalCost += result.cost.usd;
      expect(result.timings.enqueuedAt).toBeLessThanOrEqual(result.timings.startedAt);
      expect(textOf(result)).toBe(await directText(job));
    });

    // Cost totals: the workers' metrics (batch="true") and the fleet stats in Redis.
    const batchCost = async (w: RunningWorker) =>
      ((await w.metrics.registry.getSingleMetric('headroom_cost_usd_total')?.get())?.values ?? []).filter((v) => v.labels.batch === 'true').reduce((a, v) => a + v.value, 0);
    const leaders = async (w: RunningWorker) => (await w.metrics.registry.getSingleMetric('headroom_batch_leader')?.get())?.values[0]?.value ?? 0;
    expect((await leaders(workers[0]!)) + (await leaders(workers[1]!))).toBe(1);
    expect((await batchCost(workers[0]!)) + (await batchCost(workers[1]!))).toBeCloseTo(totalCost, 9);

    await Promise.all(workers.map((w) => w.close()));
    const fleet = await readFleetStats(admin, prefix, 5);
    expect(fleet.lanes.batch).toMatchObject({ completed: 997, failed: 3 });
    expect(fleet.costUsd).toBeCloseTo(totalCost, 6);
    // Every claim was settled and cleaned up.
    const keys = fleetKeys(prefix);
    expect(await admin.zcard(keys.batchClaims)).toBe(0);
    expect(await admin.hlen(keys.batches)).toBe(0);
    // ... and the OpenAI batches' input, output and error files were deleted at the provider.
    const files = new OpenAI({ apiKey: ENV.BATCH_TEST_OPENAI_KEY, baseURL: `${sim.url}/v1` }).files;
    await until('the OpenAI batch files to be deleted', async () => (await files.list()).data.length === 0);
    await producer.close();
  });

  it('sends OpenAI Responses jobs as Responses batches of their own, beside Chat Completions jobs of the same model', async () => {
    sim.reset();
    const prefix = `b${randomUUID().slice(0, 8)}`;
    const config = parseConfig(fleetConfig(prefix, { maxRequests: 100, maxWaitMs: 500, pollIntervalMs: 200, leaseMs: 2_000, parkLockMs: 60_000, submitTimeoutMs: 10_000 }));
    const worker = await startWorker({ config, redisUrl: redis.url, env: ENV, id: 'w-responses', logger: createLogger({ level: 'silent' }) });
    const producer = new Producer({ redis: redis.url, prefix });
    try {
      const responsesJob = (i: number): LlmJobInput => ({
        priority: 'LOW', sla: 'none', provider: 'openai', api: 'responses', metadata: { i },
        request: { model: GPT, max_output_tokens: 40, instructions: 'Classify.', input: [{ role: 'user', content: `Responses batch question ${i}` }] },
      });
      const jobs = [...Array.from({ length: 20 }, (_, i) => responsesJob(i)), ...Array.from({ length: 20 }, (_, i) => noSla(GPT, `chat-${i}`, i))];
      const handles = await Promise.all(jobs.map((j) => producer.enqueue(j)));
      const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 30_000 })));
      // Two batches for the one model: one per endpoint (one OpenAI batch holds one endpoint's requests).
      const stats = sim.stats();
      expect(stats.batchesByModel[GPT]).toBe(2);
      expect(stats.batches.openai.requests).toBe(40);
      expect(Object.values(stats.models).reduce((a, m) => a + m.admitted, 0)).toBe(0);
      const direct = new OpenAI({ apiKey: 'sk-direct', baseURL: `${sim.url}/v1`, maxRetries: 0 });
      for (const [i, result] of results.slice(0, 20).entries()) {
        const response = result.response as OpenAI.Responses.Response;
        expect(response.object).toBe('response');
        expect(response.service_tier).toBe('batch');
        expect(result).toMatchObject({ provider: 'openai', model: GPT, cost: { batch: true }, metadata: { i } });
        expect(result.usage.outputTokens).toBe(response.usage!.output_tokens);
        const same = await direct.responses.create(jobs[i]!.request as unknown as OpenAI.Responses.ResponseCreateParamsNonStreaming);
        expect((response.output[0] as { content: { text: string }[] }).content[0]!.text).toBe(same.output_text);
      }
      for (const [i, result] of results.slice(20).entries()) expect(textOf(result)).toBe(await directText(jobs[20 + i]!));
    } finally {
      await producer.close();
      await worker.close();
    }
  });

  it("follows a LOW job shed to the batch lane while it waited (getJob, cancel, its timings), and runs its key again after its batch expired", async () => {
    sim.reset();
    const prefix = `m${randomUUID().slice(0, 8)}`;
    const config = parseConfig({
      ...fleetConfig(prefix, { maxRequests: 100, maxWaitMs: 300, pollIntervalMs: 200, leaseMs: 2_000, parkLockMs: 60_000, submitTimeoutMs: 10_000 }),
      lanes: { low: { maxWaitMs: 1_000 } },
    });
    // The pools' pressure is the test's to set (as in pressure.test.ts); the sheds and hand-offs it
    // leads to are the fleet's own doing.
    let brownout = false;
    const worker = await startWorker({ config, redisUrl: redis.url, env: ENV, id: 'w-moved', logger: createLogger({ level: 'silent' }), pressure: (_pool, computed) => ({ ...computed, value: brownout ? 1 : 0 }) });
    const producer = new Producer({ redis: redis.url, prefix });
    const lanes = (['low', 'batch'] as const).map((lane) => new Queue(laneKeys(prefix, lane).queueName, { prefix: laneKeys(prefix, lane).bullPrefix, connection: admin }));
    const [lowLane, batchLane] = lanes as [Queue, Queue];
    const low = (tag: string, key?: string): LlmJobInput =>
      ({ priority: 'LOW', onShed: 'batch', provider: 'anthropic', ...(key ? { idempotencyKey: key } : {}), request: { model: HAIKU, max_tokens: 40, messages: [{ role: 'user', content: `Moved question ${tag}` }] } }) as LlmJobInput;
    const shedding = async () => (await admin.hlen(laneKeys(prefix, 'low').shedding)) > 0;
    try {
      // Held in their lanes until the test lets them go: the LOW jobs must wait past their max
      // wait, and the BATCH jobs they become must wait unclaimed for a while.
      await lowLane.pause();
      await batchLane.pause();
      const keyed = await producer.enqueue(low('keyed', 'moved-key'));
      const cancelled = await producer.enqueue(low('cancelled'));
      const plain = await producer.enqueue(low('plain'));
      const lowTimestamp = Number(await admin.hget(`${laneKeys(prefix, 'low').jobKeyPrefix}${plain.id}`, 'timestamp'));
      brownout = true;
      await until('the LOW pool to shed', shedding, 10_000);
      await new Promise((r) => setTimeout(r, 1_200)); // past the LOW lane's max wait
      // Refused SHED at admission, this one goes to the batch lane at enqueue.
      const atEnqueue = await producer.enqueue(low('at-enqueue', 'at-enqueue-key'));
      expect(atEnqueue.lane).toBe('batch');
      await lowLane.resume();
      const lowDone = async () => (await Promise.all([keyed, cancelled, plain].map((h) => lowLane.getJobState(h.id)))).every((s) => s === 'completed');
      await until('the waiting LOW jobs to be handed to the batch lane', lowDone, 20_000);

      // getJob reports the job it became, still waiting for its batch (not `completed` with a pointer).
      expect(await producer.getJob(keyed.id)).toMatchObject({ id: handOffJobId(keyed.id), lane: 'batch', state: 'waiting', movedFrom: keyed.id, job: { sla: 'none' } });
      expect((await producer.getJob(keyed.id))?.result).toBeUndefined();
      // cancel follows it too: not yet in a claim, it is removed.
      expect(await producer.cancel(cancelled.id)).toBe(true);
      expect(await batchLane.getJob(handOffJobId(cancelled.id))).toBeUndefined();
      await expect(cancelled.result({ timeoutMs: 10_000 })).rejects.toMatchObject({ failureCode: 'CANCELLED' });

      sim.injectBatchFaults({ expired: [customIdOf('anthropic', handOffJobId(keyed.id)), customIdOf('anthropic', atEnqueue.id)] });
      await batchLane.resume();
      const result = await plain.result({ timeoutMs: 30_000 });
      expect(result.cost.batch).toBe(true);
      // The caller waited from its LOW enqueue, not from the hand-off.
      expect(result.timings.enqueuedAt).toBe(lowTimestamp);
      expect(result.timings.waitMs).toBe(result.timings.startedAt - lowTimestamp);
      expect(await producer.getJob(plain.id)).toMatchObject({ id: handOffJobId(plain.id), state: 'completed', result: { cost: { batch: true } } });
      await expect(keyed.result({ timeoutMs: 30_000 })).rejects.toMatchObject({ failureCode: 'BATCH_EXPIRED' });
      await expect(atEnqueue.result({ timeoutMs: 30_000 })).rejects.toMatchObject({ failureCode: 'BATCH_EXPIRED' });
      expect(await producer.getJob(keyed.id)).toMatchObject({ state: 'failed', failure: { code: 'BATCH_EXPIRED' } });

      // Once the pool no longer sheds, each key's repeat runs the job again: the expiry told its
      // caller to resubmit if it still mattered.
      brownout = false;
      await until('the LOW pool to stop shedding', async () => !(await shedding()), 10_000);
      const interactiveBefore = sim.stats().models[HAIKU]?.admitted ?? 0;
      for (const key of ['moved-key', 'at-enqueue-key']) {
        const again = await producer.enqueue(low(key === 'moved-key' ? 'keyed' : 'at-enqueue', key));
        expect(again).toMatchObject({ lane: 'low', existing: false });
        const rerun = await again.result({ timeoutMs: 30_000 });
        expect(rerun.cost.batch).toBeFalsy();
      }
      expect((sim.stats().models[HAIKU]?.admitted ?? 0) - interactiveBefore).toBe(2);
    } finally {
      await Promise.all(lanes.map((q) => q.close()));
      await producer.close();
      await worker.close();
    }
  });

  it('survives a leader SIGKILLed between a provider accepting its batch and the batch id being recorded', async () => {
    sim.reset();
    const prefix = `k${randomUUID().slice(0, 8)}`;
    const configFile = writeConfig(fleetConfig(prefix, { maxRequests: 1000, maxWaitMs: 500, pollIntervalMs: 300, leaseMs: 2_000, parkLockMs: 60_000, submitTimeoutMs: 10_000 }));
    const keys = fleetKeys(prefix);
    const procs: FleetProcess[] = [];
    try {
      procs.push(spawnWorker(configFile, redis.url, 'leader-a', ENV));
      await until('worker a to lead', async () => (await admin.get(keys.batchLeader))?.startsWith('leader-a|') ?? false, 60_000); // a process start on a loaded machine
      procs.push(spawnWorker(configFile, redis.url, 'follower-b', ENV));

      // The provider accepts each batch but its answer is held back: the leader is killed while
      // it waits, so the batch exists and nobody recorded its id.
      sim.injectBatchFaults({ holdCreateReplyMs: 60_000 });
      const producer = new Producer({ redis: redis.url, prefix });
      const jobs = [...Array.from({ length: 150 }, (_, i) => noSla(SONNET, `k-s-${i}`, i)), ...Array.from({ length: 150 }, (_, i) => noSla(GPT, `k-g-${i}`, 150 + i))];
      const handles = await Promise.all(jobs.map((j) => producer.enqueue(j)));
      await until('both batches to exist at the provider', () => sim.stats().batches.anthropic.created === 1 && sim.stats().batches.openai.created === 1);
      const claims = await admin.zrange(keys.batchClaims, '0', '-1');
      expect(claims).toHaveLength(2);
      for (const claim of claims) {
        expect(await admin.hget(keys.batchClaim(claim), 'intentAt')).not.toBeNull();
        expect(await admin.hget(keys.batchClaim(claim), 'batchId')).toBeNull();
      }
      procs[0]!.child.kill('SIGKILL');
      await procs[0]!.exited;
      sim.clearFaults();

      const settled = await Promise.allSettled(handles.map((h) => h.result({ timeoutMs: 45_000 })));
      expect(settled.filter((s) => s.status === 'rejected').map((s) => String((s as PromiseRejectedResult).reason))).toEqual([]);
      expect((await admin.get(keys.batchLeader))?.startsWith('follower-b|2')).toBe(true);
      // No duplicate batch: the new leader found each one instead of submitting again.
      const stats = sim.stats();
      expect(stats.batches.anthropic.created).toBe(1);
      expect(stats.batches.openai.created).toBe(1);
      expect(stats.batchesByModel).toEqual({ [SONNET]: 1, [GPT]: 1 });
      await inParallel([...settled.keys()], 16, async (i) => {
        const result = (settled[i] as PromiseFulfilledResult<LlmResult>).value;
        expect(result.metadata).toEqual({ i: jobs[i]!.metadata!.i });
        expect(textOf(result)).toBe(await directText(jobs[i]!));
      });
      // The claims' records go once their jobs have ended (a moment after the last result).
      await until('the settled claims to be removed', async () => (await admin.zcard(keys.batchClaims)) === 0);
      await producer.close();
    } finally {
      await stopAll(procs, 'SIGKILL');
    }
  });
});
