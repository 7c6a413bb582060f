/**
 * A finish refused by BullMQ (the lock is another worker's, or the job is gone), completed or
 * failed: what the worker says of it, and whether it counts the job's end. A job that runs again ends there, and is
 * counted there, once (its rerun may complete it from its relay: relayed-answer.ts).
 */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Queue, Worker, type Job } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { addToLane, createLogger, decodeJobEvent, FailureCode, jobEventsKey, relayEvents, FleetStatsWriter, jobFailure, laneKeys, parseConfig, publishFleetSettings, type LlmJob, type LlmResult } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { WorkerMetrics } from '../metrics.js';
import type { RunContext } from '../run/run-context.js';
import type { HeldJobs } from './held-jobs.js';
import { OutcomeApplier } from './outcome-applier.js';
import type { PoolBackoffs } from './pool-backoff.js';

const SONNET = 'claude-sonnet-4-6';
const db = redisForFile();
const closers: { close(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
});

/** A worker's applier over a lane of its own, with the log lines it writes and its jobs counter. */
async function applierOf() {
  const prefix = `oa-${randomUUID().slice(0, 8)}`;
  const redis = db.workerRedis;
  const config = parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic' } } });
  await publishFleetSettings(redis, config);
  const k = laneKeys(prefix, 'high');
  const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: redis });
  const worker = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: redis, autorun: false, skipLockRenewal: true });
  closers.push(queue, worker);
  const lines: { msg: string }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(String(chunk)) as { msg: string });
      done();
    },
  });
  const logger = createLogger({ level: 'warn', destination });
  const metrics = new WorkerMetrics({ defaultMetrics: false });
  // The part of a run context a finish reads: its metrics, fleet stats and logger, all real.
  const ctx = { config, metrics, stats: new FleetStatsWriter(redis, prefix), logger, now: Date.now } as unknown as RunContext;
  // A finish never holds a job back nor backs a pool off.
  const applier = new OutcomeApplier({ ctx, config, redis, backoffs: {} as PoolBackoffs, held: {} as HeldJobs, backendOf: () => worker.backend });
  const take = async (options: { stream?: boolean } = {}): Promise<{ job: Job; token: string }> => {
    const id = `high.${randomUUID()}`;
    const request = { model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }], ...(options.stream ? { stream: true } : {}) };
    await addToLane(redis, queue, prefix, 'high', [{ jobId: id, job: { priority: 'HIGH', provider: 'anthropic', request } as LlmJob }]);
    const token = randomUUID();
    const job = await worker.getNextJob(token, { block: false });
    if (!job) throw new Error('lane empty');
    return { job, token };
  };
  const ended = (outcome: string) => async () => (await metrics.jobs.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  return { applier, take, lines, completions: ended('completed'), failures: ended('failed'), k, prefix };
}

const result: LlmResult = {
  provider: 'anthropic',
  model: SONNET,
  response: { content: [{ type: 'text', text: 'hello' }] },
  usage: { inputTokens: 5, outputTokens: 1, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
  attempts: 1,
  timings: { enqueuedAt: 1, startedAt: 2, finishedAt: 3, waitMs: 1, runMs: 1 },
  cost: { usd: 0, batch: false },
};

describe('a finish BullMQ refuses', () => {
  it('counts no completion for a job whose lock is another worker\'s, and says it runs again', async () => {
    const { applier, take, lines, completions } = await applierOf();
    const { job } = await take();
    await applier.apply(job, 'a-lapsed-lock', 'high', { kind: 'completed', result });
    expect(await completions()).toBe(0);
    expect(lines.map((l) => l.msg)).toEqual(['could not finish the job: its lock is no longer ours; it runs again']);
    expect(await job.getState()).toBe('active');
  });

  it("says of a streamed job it lost after relaying its whole answer that the worker that took it again completes it with that answer", async () => {
    const { applier, take, lines, completions } = await applierOf();
    const { job } = await take({ stream: true });
    await applier.apply(job, 'a-lapsed-lock', 'high', { kind: 'completed', result: { ...result, streamed: true } });
    expect(await completions()).toBe(0);
    expect(lines.map((l) => l.msg)).toEqual(['could not finish the job: its lock is no longer ours; the worker that took it again completes it with the answer relayed here whole (no second provider call)']);
  });

  it("relays the error event of a streamed job it lost mid-stream, which the refused finish did not write: the worker following its relay fails the job with it", async () => {
    const { applier, take, lines, failures, prefix } = await applierOf();
    const { job } = await take({ stream: true });
    await relayEvents(db.workerRedis, prefix, job.id!, [{ kind: 'start', model: SONNET, waitMs: 0, startedAt: 1 }, { kind: 'event', data: '{"type":"message_start"}' }], { first: true });
    const failure = jobFailure(FailureCode.STREAM_FAILED, '200 network connection closed mid-response (after 1 events had been streamed)');
    const streamError = { kind: 'error' as const, data: '{"type":"error","error":{"type":"api_error","message":"cut"}}', failure };
    await applier.apply(job, 'a-lapsed-lock', 'high', { kind: 'failed', failure, progress: { attempts: 1 }, streamError });
    expect(await failures()).toBe(0);
    expect(lines.map((l) => l.msg)).toEqual(["could not finish the job: its lock is no longer ours; its stream's error, relayed now, fails it where it was taken again"]);
    const entries = await db.workerRedis.xrange(jobEventsKey(prefix, job.id!), '-', '+');
    expect(decodeJobEvent(...(entries.at(-1)![1] as [string, string]))).toEqual(streamError);
    expect(await job.getState()).toBe('active');
  });

  it('says a job gone from Redis does not run again, and counts its end here, the only one it has', async () => {
    const { applier, take, lines, completions, k } = await applierOf();
    const { job, token } = await take();
    // What a Redis restarted without its data leaves of the job: nothing.
    await db.workerRedis.del(`${k.bullPrefix}:${k.queueName}:${job.id}`);
    await applier.apply(job, token, 'high', { kind: 'completed', result });
    expect(await completions()).toBe(1);
    expect(lines.map((l) => l.msg)).toEqual(['could not finish the job: it is gone from Redis (restarted without its data); it does not run again and nothing of it is kept']);
  });

  it('says a failed job gone from Redis is gone, not that it runs again, and counts its failure here', async () => {
    const { applier, take, lines, k, failures } = await applierOf();
    const { job, token } = await take();
    await db.workerRedis.del(`${k.bullPrefix}:${k.queueName}:${job.id}`);
    await applier.apply(job, token, 'high', { kind: 'failed', failure: jobFailure(FailureCode.STREAM_FAILED, 'the stream broke'), progress: { attempts: 1 } });
    expect(await failures()).toBe(1);
    expect(lines.map((l) => l.msg)).toEqual(['could not finish the job: it is gone from Redis (restarted without its data); it does not run again and nothing of it is kept']);
  });

  it('says a job gone from Redis that was to retry later is gone, not that it runs again', async () => {
    const { applier, take, lines, k } = await applierOf();
    const { job, token } = await take();
    await db.workerRedis.del(`${k.bullPrefix}:${k.queueName}:${job.id}`);
    await applier.apply(job, token, 'high', { kind: 'delay', delayMs: 1_000, progress: { attempts: 1 } });
    expect(lines.map((l) => l.msg)).toEqual(['could not record the job outcome: it is gone from Redis (restarted without its data); it does not run again and nothing of it is kept']);
  });

  it('counts a completion it finished', async () => {
    const { applier, take, lines, completions } = await applierOf();
    const { job, token } = await take();
    await applier.apply(job, token, 'high', { kind: 'completed', result });
    expect(await completions()).toBe(1);
    expect(lines).toEqual([]);
    expect(await job.getState()).toBe('completed');
  });
});
