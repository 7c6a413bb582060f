/**
 * Admission's limits, on a real Redis: it fails closed without the fleet's settings, counts a
 * tenant's unfinished jobs and a lane's bytes in O(1) and gives them back once, keeps the cap
 * when a worker puts a job back, and the upkeep republishes and reconciles.
 */
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '@headroom/testing';
import { addToLane, ADMITTED_OPTION, publishFleetSettings, releaseJobs, rememberHandOff, unadmitted, type Added, type LaneEntry } from './admission.js';
import { handOffJobId, idempotentJobId } from './job-ids.js';
import { decodeJobEvent, jobEventsKey, relayEvents } from './job-events.js';
import { FailureCode, failureText, jobFailure } from './failure.js';
import { parseConfig, type HeadroomConfig, type HeadroomConfigInput } from './config.js';
import { ErrorCode, HeadroomError, JobStoppingError, QueueFullError } from './errors.js';
import type { LlmJob } from './job.js';
import { laneKeys } from './keys.js';
import { cancelIfNotStarted } from './lane-cancel.js';
import { finishJob } from './lane-finish.js';
import { releaseFailedHandOff } from './hand-off-rerun.js';
import { promoteRaisedTenantParks, returnToLane } from './lane-return.js';
import { laneHandle } from './lane-handle.test-support.js';
import { LaneUpkeep } from './lane-upkeep.js';
import type { Lane } from './lanes.js';

let server: EmbeddedRedis;
let redis: Redis;
const closers: { close(): Promise<unknown> }[] = [];

beforeAll(async () => {
  server = await startEmbeddedRedis();
  redis = new Redis(server.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
  redis.disconnect();
  await server.stop();
});

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';

function config(prefix: string, extra: Partial<HeadroomConfigInput> = {}): HeadroomConfig {
  return parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic' } }, ...extra });
}

function lane(prefix: string, name: Lane = 'normal') {
  const handle = laneHandle(redis, prefix, name, closers);
  const { k, queue } = handle;
  return {
    ...handle,
    add: (...jobs: Partial<LlmJob>[]) =>
      addToLane(
        redis,
        queue,
        prefix,
        name,
        jobs.map((j): LaneEntry => ({ jobId: `${name}.${randomUUID()}`, job: llmJob(j) })),
      ),
    /** Jobs not yet started, as admission counts them (BullMQ's own sets). */
    size: async () => (await redis.llen(k.wait)) + (await redis.zcard(k.prioritized)) + (await redis.zcard(k.delayed)),
  };
}

function llmJob(extra: Partial<LlmJob> = {}): LlmJob {
  return {
    priority: 'NORMAL',
    provider: 'anthropic',
    request: { model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] },
    ...extra,
  } as LlmJob;
}

const added = (r: Added | HeadroomError): Added => {
  if (r instanceof HeadroomError) throw r;
  return r;
};

describe('admission fails closed', () => {
  it('refuses every job with FLEET_UNPUBLISHED until a fleet publishes, and writes nothing', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    const l = lane(prefix);
    const [refused] = await l.add({});
    expect(refused).toBeInstanceOf(HeadroomError);
    expect((refused as HeadroomError).code).toBe(ErrorCode.FLEET_UNPUBLISHED);
    expect(await l.size()).toBe(0);
    await publishFleetSettings(redis, config(prefix));
    expect(added((await l.add({}))[0]!).existing).toBe(false);
  });

  it('after the settings vanish (FLUSHALL, a restart without persistence) refuses rather than admit against defaults, until republished', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    const cfg = config(prefix, { lanes: { normal: { cap: 3 } }, tenants: { default: { maxQueued: 1 } } });
    await publishFleetSettings(redis, cfg);
    const l = lane(prefix);
    // The settings go (FLUSHALL would take every other prefix's keys too; these are this lane's).
    await redis.del(l.k.settings, l.k.models);
    const replies = await l.add({}, {}, {}, {}, {}, { tenant: 'acme' }, { request: { model: 'claude-nope', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] } });
    for (const r of replies) expect((r as HeadroomError).code).toBe(ErrorCode.FLEET_UNPUBLISHED);
    expect(await l.size()).toBe(0);

    // A worker's upkeep finds them missing and publishes them again: the configured cap holds.
    const round = await new LaneUpkeep({ redis, config: cfg }).round();
    expect(round.republished).toBe(true);
    const after = await l.add({}, {}, {}, {}, {});
    expect(after.filter((r) => !(r instanceof HeadroomError))).toHaveLength(3);
    expect(after.slice(3).map((r) => (r as HeadroomError).code)).toEqual([ErrorCode.QUEUE_FULL, ErrorCode.QUEUE_FULL]);
    const unknown = await l.add({ request: { model: 'claude-nope', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] } });
    expect((unknown[0] as HeadroomError).code).toBe(ErrorCode.JOB_INVALID);
    expect((await new LaneUpkeep({ redis, config: cfg }).round()).republished).toBe(false);
  });

  it('refuses with FLEET_UNPUBLISHED, not an unknown model, when only the models are lost, and the upkeep publishes them again', async () => {
    // A worker whose config served no model published an empty models hash (no key at all) over
    // the fleet's, and stopped; the settings hash stayed. Every job was refused "unknown model"
    // (JOB_INVALID, not retryable) and no running worker noticed.
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    const cfg = config(prefix);
    await publishFleetSettings(redis, cfg);
    const l = lane(prefix);
    await redis.del(l.k.models);
    const [refused] = await l.add({});
    expect(refused).toMatchObject({ code: ErrorCode.FLEET_UNPUBLISHED, retryable: true });
    expect(await l.size()).toBe(0);

    const round = await new LaneUpkeep({ redis, config: cfg }).round();
    expect(round.republished).toBe(true);
    expect(await redis.hget(l.k.models, SONNET)).toBe(`anthropic:${SONNET}`);
    expect(added((await l.add({}))[0]!).existing).toBe(false);
    // A model the fleet does not serve is still JOB_INVALID once the models are there.
    const [unknown] = await l.add({ request: { model: 'claude-nope', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] } });
    expect(unknown).toMatchObject({ code: ErrorCode.JOB_INVALID });
  });

  it('tells a lost output-caps or fallbacks hash from one the config leaves empty: refuses FLEET_UNPUBLISHED meanwhile, and the upkeep publishes it again', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    const MINI = 'gpt-4.1-mini';
    const cfg = parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic', fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic' }, [MINI]: { provider: 'openai', maxOutputTokens: 32_768 } } });
    await publishFleetSettings(redis, cfg);
    const k = laneKeys(prefix, 'normal');
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: redis });
    closers.push(queue);
    // A request with no output bound reserves the model's cap: with the caps hash gone, the fleet
    // must publish it again, not refuse the request as if the model had none.
    const uncapped = { priority: 'NORMAL', provider: 'openai', request: { model: MINI, messages: [{ role: 'user', content: 'x' }] } } as LlmJob;
    await redis.del(k.outputCaps, k.fallbacks);
    const [refused] = await addToLane(redis, queue, prefix, 'normal', [{ jobId: `normal.${randomUUID()}`, job: uncapped }]);
    expect(refused).toMatchObject({ code: ErrorCode.FLEET_UNPUBLISHED });
    expect((await new LaneUpkeep({ redis, config: cfg }).round()).republished).toBe(true);
    expect(await redis.hget(k.fallbacks, SONNET)).toBe(HAIKU);
    expect(added((await addToLane(redis, queue, prefix, 'normal', [{ jobId: `normal.${randomUUID()}`, job: uncapped }]))[0]!).existing).toBe(false);
    // A config with neither: nothing is missing, nothing republished.
    const bare = config(`ad-${randomUUID().slice(0, 8)}`);
    await publishFleetSettings(redis, bare);
    expect((await new LaneUpkeep({ redis, config: bare }).round()).republished).toBe(false);
  });
});

describe('a request with no output bound', () => {
  const GPT = 'gpt-4.1';
  const MINI = 'gpt-4.1-mini';
  const chat = (model: string, extra: Partial<LlmJob> = {}): Partial<LlmJob> =>
    ({ provider: 'openai', request: { model, messages: [{ role: 'user', content: 'hi' }] }, ...extra }) as Partial<LlmJob>;

  it("is admitted when every model of its ladder has maxOutputTokens in the fleet's config, refused naming the model otherwise, and nothing is added", async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, parseConfig({ redis: { prefix }, models: { [GPT]: { provider: 'openai', maxOutputTokens: 32_768 }, [MINI]: { provider: 'openai' } } }));
    const l = lane(prefix);
    const [capped, uncapped, uncappedFallback, bounded] = await l.add(
      chat(GPT),
      chat(MINI),
      chat(GPT, { fallback: [MINI] }),
      chat(MINI, { request: { model: MINI, max_completion_tokens: 64, messages: [{ role: 'user', content: 'hi' }] } } as Partial<LlmJob>),
    );
    expect(added(capped!).existing).toBe(false);
    expect(added(bounded!).existing).toBe(false);
    for (const [refused, model] of [[uncapped, MINI], [uncappedFallback, MINI]] as const) {
      expect((refused as HeadroomError).code).toBe(ErrorCode.JOB_INVALID);
      expect((refused as HeadroomError).message).toContain(`request.max_completion_tokens: set max_completion_tokens (or max_tokens): model "${model}" has no maxOutputTokens`);
    }
    expect(await l.size()).toBe(2);
  });

  it('is taken by the batch lane without a cap: the batch API is never drawn from the bucket', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, parseConfig({ redis: { prefix }, models: { [MINI]: { provider: 'openai' } } }));
    const [result] = await lane(prefix, 'batch').add(chat(MINI, { sla: 'none' } as Partial<LlmJob>));
    expect(added(result!).existing).toBe(false);
  });

  it("costs its primary model's output cap per choice in a fair lane, as a bounded one costs its own bound", async () => {
    const request = { model: GPT, messages: [{ role: 'user', content: 'hi' }] };
    const charged: Record<string, number> = {};
    for (const [tenant, extra] of [['uncapped', { n: 2 }], ['bounded', { max_completion_tokens: 1_500 }]] as const) {
      // A tenant's first job in an empty fair lane starts at tag 0: its finish tag is its cost.
      const prefix = `ad-${randomUUID().slice(0, 8)}`;
      await publishFleetSettings(redis, parseConfig({ redis: { prefix }, models: { [GPT]: { provider: 'openai', maxOutputTokens: 1_000 } }, lanes: { normal: { fairness: 'tenants' } } }));
      const l = lane(prefix);
      const { id } = added((await l.add(chat(GPT, { tenant, request: { ...request, ...extra } } as Partial<LlmJob>)))[0]!);
      const data = (await redis.hget(`${l.k.jobKeyPrefix}${id}`, 'data'))!;
      charged[tenant] = Number(await redis.hget(l.k.fair, `t:${tenant}`)) - Math.ceil(data.length / 4);
    }
    expect(charged).toEqual({ uncapped: 2 * 1_000, bounded: 1_500 });
  });
});

describe('the admission mark', () => {
  it("marks every job it adds with its own id, and tells a worker which jobs it took were added around it (Queue.add, a copy of an admitted job), with no round trip for marked ones", async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    const [added] = await l.add({});
    const id = (added as Added).id;
    await l.queue.add(`anthropic:${SONNET}`, llmJob({}), { jobId: 'normal.around' });
    // A job an older producer admitted: counted by the lane, without the mark (or marked 1).
    await l.queue.add(`anthropic:${SONNET}`, llmJob({}), { jobId: 'normal.older' });
    await redis.hset(l.k.unfinished, 'normal.older', '100|');
    await l.queue.add(`anthropic:${SONNET}`, llmJob({}), { jobId: 'normal.older-1', [ADMITTED_OPTION]: 1 } as never);
    await redis.hset(l.k.unfinished, 'normal.older-1', '100|');
    // Copies of an admitted job, re-added the usual way with its options, and a forged mark.
    const original = (await l.queue.getJob(id))!;
    await l.queue.add(original.name, original.data, { ...original.opts, jobId: 'normal.copy' });
    await l.queue.add(original.name, original.data, { [ADMITTED_OPTION]: 1 } as never);
    const taken = [];
    for (let i = 0; i < 6; i++) taken.push((await l.take()).job);
    expect(taken.find((j) => j.id === id)?.opts).toMatchObject({ [ADMITTED_OPTION]: id });
    const copyWithOwnId = taken.find((j) => ![id, 'normal.around', 'normal.older', 'normal.older-1', 'normal.copy'].includes(j.id!))!;
    expect([...(await unadmitted(redis, prefix, 'normal', taken))].sort()).toEqual(['normal.around', 'normal.copy', copyWithOwnId.id].sort());
    // Marked jobs alone: nothing is asked of Redis, so even a closed connection answers.
    const closed = new Redis(server.url, { lazyConnect: true, enableOfflineQueue: false });
    expect((await unadmitted(closed, prefix, 'normal', taken.filter((j) => j.id === id))).size).toBe(0);
    closed.disconnect();
  });
});

describe('an idempotent job moved to the batch lane at admission', () => {
  it("answers its key's repeat with the BATCH job its alias names, in another lane: no new job, no share counted on a hash out of reach", async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const low = lane(prefix, 'low');
    const job = llmJob({ priority: 'LOW', onShed: 'batch', idempotencyKey: 'k' });
    const jobId = idempotentJobId('low', 'k');
    const add = (j: LlmJob) => addToLane(redis, low.queue, prefix, 'low', [{ jobId, job: j }]);
    await rememberHandOff(redis, prefix, 'low', jobId, handOffJobId(jobId), job, 60);
    expect(await add(job)).toMatchObject([{ id: handOffJobId(jobId), existing: true }]);
    expect(await low.size()).toBe(0);
    expect(await redis.exists(`${low.k.jobKeyPrefix}${jobId}`, `${low.k.jobKeyPrefix}${handOffJobId(jobId)}`)).toBe(0);
    // The key on another job is refused, as for the key's own job.
    const [other] = await add(llmJob({ priority: 'LOW', onShed: 'batch', idempotencyKey: 'k', metadata: { other: true } }));
    expect(other).toMatchObject({ code: ErrorCode.JOB_INVALID });
    // Once the alias is gone, the key makes a job of its own.
    await redis.del(low.k.idempotentAlias(jobId));
    expect(await add(job)).toMatchObject([{ id: jobId, existing: false }]);
  });
});

describe('a key whose job was shed to the batch lane and failed there', () => {
  it('runs again on a repeat once its BATCH job failed to retry: the pointer goes (kept aside), and the hand-off job is added afresh under its id', async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const [low, batch] = [lane(prefix, 'low'), lane(prefix, 'batch')];
    const job = llmJob({ priority: 'LOW', onShed: 'batch', idempotencyKey: 'k' });
    const jobId = idempotentJobId('low', 'k');
    const handOff = handOffJobId(jobId);
    const addLow = async () => added((await addToLane(redis, low.queue, prefix, 'low', [{ jobId, job }]))[0]!);
    const handOffAgain = async () => added((await addToLane(redis, batch.queue, prefix, 'batch', [{ jobId: handOff, job: { ...job, sla: 'none' } }]))[0]!);
    /** What a worker does with a waiting job it sheds, then the batch leader with its expired entry. */
    const shedAndExpire = async () => {
      const taken = await low.take();
      await handOffAgain();
      await finishJob(redis, prefix, 'low', low.backend, taken.job, taken.token, { completed: { movedTo: handOff, reason: 'SHED: under pressure' } });
      const parked = await batch.take();
      expect(parked.job.id).toBe(handOff);
      await finishJob(redis, prefix, 'batch', batch.backend, parked.job, parked.token, { failed: 'BATCH_EXPIRED: the batch expired before the request ran' });
    };
    expect(await addLow()).toMatchObject({ id: jobId, existing: false });
    await shedAndExpire();
    // The repeat lands on the moved run, as before: the BATCH job is out of the add script's reach.
    expect(await addLow()).toMatchObject({ id: jobId, existing: true });
    expect(await releaseFailedHandOff(redis, prefix, 'low', jobId, handOff)).toBe(true);
    expect(await addLow()).toMatchObject({ id: jobId, existing: false });
    expect(await low.size()).toBe(1);
    const movedAside = (await redis.zrange(low.k.completed, '0', '-1')).filter((id) => id.startsWith(`${jobId}.moved-`));
    expect(movedAside).toHaveLength(1);
    expect(JSON.parse((await redis.hget(`${low.k.jobKeyPrefix}${movedAside[0]}`, 'returnvalue'))!)).toMatchObject({ movedTo: handOff });
    // Shed again, it is handed to a new BATCH job under the same id, not to the old failure.
    await shedAndExpire();
    expect((await redis.zrange(batch.k.failed, '0', '-1')).filter((id) => id.startsWith(`${handOff}.failed-`))).toHaveLength(1);

    /** Shed at enqueue (admission's alias), then its BATCH job failed with `failedReason`: is the alias released? */
    const shedAtEnqueueAndFail = async (key: string, failedReason: string) => {
      const id = idempotentJobId('low', key);
      await rememberHandOff(redis, prefix, 'low', id, handOffJobId(id), job, 60);
      await addToLane(redis, batch.queue, prefix, 'batch', [{ jobId: handOffJobId(id), job: { ...job, sla: 'none' } }]);
      const parked = await batch.take();
      await finishJob(redis, prefix, 'batch', batch.backend, parked.job, parked.token, { failed: failedReason });
      return { released: await releaseFailedHandOff(redis, prefix, 'low', id, handOffJobId(id)), aliased: await redis.exists(low.k.idempotentAlias(id)) };
    };
    // A failure that would only repeat (the provider refused the request) is answered again.
    expect(await shedAtEnqueueAndFail('refused', 'PROVIDER_REJECTED: invalid_request_error: bad')).toEqual({ released: false, aliased: 1 });
    // The alias admission leaves for a job shed at enqueue goes once its BATCH job expired.
    expect(await shedAtEnqueueAndFail('alias', 'BATCH_EXPIRED: expired')).toEqual({ released: true, aliased: 0 });
  });
});

describe('tenant accounting', () => {
  it('refuses a tenant at its max with a counter read (no scan of its jobs), and frees a slot once per finished job', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix, { tenants: { default: { maxQueued: 2 } } }));
    const l = lane(prefix);
    const [a, b, c] = await l.add({ tenant: 'acme' }, { tenant: 'acme' }, { tenant: 'acme' });
    added(a!);
    added(b!);
    expect((c as HeadroomError).code).toBe(ErrorCode.QUOTA_EXCEEDED);
    expect(await redis.hget(l.k.usage, 'tenant:acme')).toBe('2');

    // Started jobs still count (they are unfinished); a finished one is given back, once.
    const { job, token } = await l.take();
    expect(await releaseJobs(redis, prefix, 'normal', [job.id!])).toBe(0);
    expect((await l.add({ tenant: 'acme' }))[0]).toMatchObject({ code: ErrorCode.QUOTA_EXCEEDED });
    await job.moveToCompleted({ ok: true }, token, false);
    expect(await releaseJobs(redis, prefix, 'normal', [job.id!, job.id!])).toBe(1);
    expect(await releaseJobs(redis, prefix, 'normal', [job.id!])).toBe(0);
    expect(await redis.hget(l.k.usage, 'tenant:acme')).toBe('1');
    added((await l.add({ tenant: 'acme' }))[0]!);
  });

  /**
   * A key's job of tenant acme, whose max of unfinished jobs is 1, added once: `usage` is what the
   * lane counts for it, and `add` sends the key again.
   */
  async function keyedJobAtTenantMax(key: string) {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix, { tenants: { default: { maxQueued: 1 } } }));
    const l = lane(prefix);
    const jobId = idempotentJobId('normal', key, 'acme');
    const entry: LaneEntry = { jobId, job: llmJob({ tenant: 'acme', idempotencyKey: key }) };
    const add = async () => added((await addToLane(redis, l.queue, prefix, 'normal', [entry]))[0]!);
    expect(await add()).toMatchObject({ id: jobId, existing: false });
    return { prefix, l, jobId, add, usage: await redis.hgetall(l.k.usage) };
  }

  it("gives back a failed run's counts when its key's repeat runs it again before the upkeep did (a run BullMQ's stalled check failed)", async () => {
    // BullMQ's stalled check fails a job that stalled too often without admission's release: the
    // lane upkeep gives its counts back when its walk reaches the entry. A repeat of the key read
    // as "runs again" (a stall) and sent before that walk was refused for the failed run (the
    // tenant at its max) or, admitted, counted over it, whose counts were then never given back.
    const { prefix, l, jobId, add, usage } = await keyedJobAtTenantMax('stalled');
    const first = await l.take();
    await first.job.moveToFailed(new Error('job stalled more than allowable limit'), first.token, false);
    // The repeat runs the job again, counted once: the tenant at its max of 1 holds just this run.
    expect(await add()).toMatchObject({ id: jobId, existing: false });
    expect(await redis.hgetall(l.k.usage)).toEqual(usage);
    expect((await l.add({ tenant: 'acme' }))[0]).toMatchObject({ code: ErrorCode.QUOTA_EXCEEDED });
    // Once the rerun ends, nothing of either run is left counted.
    const rerun = await l.take();
    await finishJob(redis, prefix, 'normal', l.backend, rerun.job, rerun.token, { completed: { ok: true } });
    await new LaneUpkeep({ redis, config: config(prefix) }).round();
    expect(await redis.hgetall(l.k.usage)).toEqual({});
  });

  it("gives back a key's job removed behind the fleet's back (Bull Board) when the key's repeat adds it again before the upkeep did", async () => {
    const { l, jobId, add, usage } = await keyedJobAtTenantMax('removed');
    await l.queue.remove(jobId);
    expect(await add()).toMatchObject({ id: jobId, existing: false });
    expect(await redis.hgetall(l.k.usage)).toEqual(usage);
  });

  it('leaves no key or field behind once a tenant goes idle, with or without maxQueued', async () => {
    for (const tenants of [{}, { default: { maxQueued: 5 } }]) {
      const prefix = `ad-${randomUUID().slice(0, 8)}`;
      await publishFleetSettings(redis, config(prefix, { tenants }));
      const l = lane(prefix);
      const ids: string[] = [];
      for (let t = 0; t < 30; t++) ids.push(added((await l.add({ tenant: `tenant-${t}` }))[0]!).id);
      // All cancelled, as Producer.cancel does: removed, then released.
      for (const id of ids) await l.queue.remove(id);
      expect(await releaseJobs(redis, prefix, 'normal', ids)).toBe(30);
      expect(await redis.exists(l.k.usage)).toBe(0);
      expect(await redis.exists(l.k.unfinished)).toBe(0);
      expect(await redis.keys(`*${prefix}*tenant*`)).toEqual([]);
    }
  });
});

describe('byte caps', () => {
  it('refuses a job that would take the lane\'s unfinished jobs past maxBytes, with QUEUE_FULL naming the bytes', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix, { lanes: { low: { maxBytes: 2_000 } } }));
    const l = lane(prefix, 'low');
    const big = { priority: 'LOW', request: { model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'x'.repeat(700) }] } } as Partial<LlmJob>;
    const [a, b, c] = await l.add(big, big, big);
    added(a!);
    added(b!);
    expect(c).toBeInstanceOf(QueueFullError);
    expect(c).toMatchObject({ code: ErrorCode.QUEUE_FULL, limit: 'bytes', maxBytes: 2_000 });
    const err = c as QueueFullError;
    expect(err.bytes! + err.jobBytes!).toBeGreaterThan(2_000);
    // Running jobs still hold their bytes; finished and released, they give them back.
    const { job, token } = await l.take();
    expect((await l.add(big))[0]).toBeInstanceOf(QueueFullError);
    await job.moveToFailed(new Error('x'), token, false);
    await releaseJobs(redis, prefix, 'low', [job.id!]);
    added((await l.add(big))[0]!);
  });
});

describe('returnToLane', () => {
  it('keeps the cap when a worker puts a job back: the job waits with its worker, then takes the first slot that frees', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix, { lanes: { normal: { cap: 2 } } }));
    const l = lane(prefix);
    await l.add({}, {});
    const a = await l.take();
    // A new job takes the slot A left.
    added((await l.add({}))[0]!);
    expect(await l.size()).toBe(2);
    // A is told to wait for quota: the lane is full, so it stays with its worker.
    expect(await returnToLane(redis, prefix, 'normal', a.job.id!, a.token)).toMatchObject({ status: 'full', cap: 2, size: 2 });
    expect(await l.size()).toBe(2);
    expect(await redis.zscore(l.k.returning, a.job.id!)).not.toBeNull();
    // Another job starts: its slot is A's, not a new job's.
    await l.take();
    expect((await l.add({}))[0]).toMatchObject({ code: ErrorCode.QUEUE_FULL });
    expect(await returnToLane(redis, prefix, 'normal', a.job.id!, a.token, { delayMs: 1_000 })).toEqual({ status: 'moved' });
    expect(await l.size()).toBe(2);
    expect(await redis.zcard(l.k.returning)).toBe(0);
    expect(await a.job.getState()).toBe('delayed');
  });

  it("brings back the jobs parked behind a tenant quota that a worker's config raised, and leaves other parks to their end", async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    // A minute's parks: acme's two behind its 2,000 tokens/min, beta's behind 5,000, and a retry's backoff.
    await l.add({ tenant: 'acme' }, { tenant: 'acme' }, { tenant: 'beta' }, { tenant: 'acme' });
    const parks = [{ tenant: 'acme', tpm: 2_000 }, { tenant: 'acme', tpm: 2_000 }, { tenant: 'beta', tpm: 5_000 }, undefined];
    const ids: string[] = [];
    for (const tenantPark of parks) {
      const { job, token } = await l.take();
      ids.push(job.id!);
      expect(await returnToLane(redis, prefix, 'normal', job.id!, token, { delayMs: 60_000, ...(tenantPark ? { tenantPark } : {}) })).toEqual({ status: 'moved' });
    }
    expect(await redis.zcard(l.k.delayed)).toBe(4);
    // acme's quota raised to 10,000; beta's as it was.
    const quotaOf = (tenant: string) => ({ acme: 10_000, beta: 5_000 })[tenant];
    expect(await promoteRaisedTenantParks(redis, prefix, 'normal', quotaOf)).toBe(2);
    const states = await Promise.all(ids.map(async (id) => (await l.queue.getJob(id))!.getState()));
    expect(states.slice(0, 2).every((s) => s === 'waiting' || s === 'prioritized')).toBe(true);
    expect(states.slice(2)).toEqual(['delayed', 'delayed']);
    // A quota removed altogether is a raise too.
    expect(await promoteRaisedTenantParks(redis, prefix, 'normal', () => undefined)).toBe(1);
    expect(await (await l.queue.getJob(ids[3]!))!.getState()).toBe('delayed');
  });

  it('moves a job back to the front of the lane when there is room', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    await l.add({}, {});
    const a = await l.take();
    expect(await returnToLane(redis, prefix, 'normal', a.job.id!, a.token)).toEqual({ status: 'moved' });
    expect((await l.take()).job.id).toBe(a.job.id);
  });
});

describe('finishJob', () => {
  it('completes a job as BullMQ would and gives back its tenant slot and bytes in the same call', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix, { tenants: { default: { maxQueued: 2 } } }));
    const l = lane(prefix);
    await l.add({ tenant: 'acme' }, { tenant: 'acme' });
    const bytesBefore = Number(await redis.hget(l.k.usage, 'bytes'));
    const { job, token } = await l.take();
    expect(await finishJob(redis, prefix, 'normal', l.backend, job, token, { completed: { answer: 42 } })).toEqual({ status: 'finished' });
    expect(await job.getState()).toBe('completed');
    expect((await l.queue.getJob(job.id!))?.returnvalue).toEqual({ answer: 42 });
    // BullMQ's own event, which result waiters read.
    const events = await redis.xrange(l.k.events, '-', '+');
    expect(events.some(([, f]) => f.includes('completed') && f.includes(job.id!) && f.includes('{"answer":42}'))).toBe(true);
    expect(await redis.hget(l.k.usage, 'tenant:acme')).toBe('1');
    expect(Number(await redis.hget(l.k.usage, 'bytes'))).toBeLessThan(bytesBefore);
    expect(await redis.hexists(l.k.unfinished, job.id!)).toBe(0);
    added((await l.add({ tenant: 'acme' }))[0]!);
  });

  it('fails a job with its failure text (no stack trace of the worker\'s code) and gives back its counts', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    await l.add({ tenant: 'acme' });
    const { job, token } = await l.take();
    expect(await finishJob(redis, prefix, 'normal', l.backend, job, token, { failed: 'PROVIDER_ERROR: boom' })).toEqual({ status: 'finished' });
    const stored = await l.queue.getJob(job.id!);
    expect(await stored!.getState()).toBe('failed');
    expect(stored!.failedReason).toBe('PROVIDER_ERROR: boom');
    expect(stored!.stacktrace).toEqual([]);
    expect(await redis.hget(l.k.usage, 'tenant:acme')).toBeNull();
  });

  it('sends the result to the replies stream its producer named (hrReplyTo), in the same call', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    const k = l.k;
    await addToLane(redis, l.queue, prefix, 'normal', [
      { jobId: 'normal.a', job: llmJob(), opts: { hrReplyTo: 'producer1' } as LaneEntry['opts'] },
      { jobId: 'normal.b', job: llmJob() },
    ]);
    for (const end of [{ completed: { answer: 7 } }, { failed: 'PROVIDER_ERROR: no' }]) {
      const { job, token } = await l.take();
      expect(await finishJob(redis, prefix, 'normal', l.backend, job, token, end)).toEqual({ status: 'finished' });
    }
    // One entry, for the job that named a producer: id, how it ended, BullMQ's stored value.
    const entries = await redis.xrange(k.replies('producer1'), '-', '+');
    expect(entries.map(([, f]) => f)).toEqual([['j', 'normal.a', 'e', 'completed', 'v', '{"answer":7}']]);
    expect(await redis.pttl(k.replies('producer1'))).toBeGreaterThan(0);
  });

  it("ends a streamed job's events with its error entry in the call that fails it: a repeat of its key sent on reading the entry runs again", async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    const job = llmJob({ idempotencyKey: 'cut', request: { model: SONNET, max_tokens: 16, stream: true, messages: [{ role: 'user', content: 'hi' }] } } as Partial<LlmJob>);
    const jobId = idempotentJobId('normal', 'cut');
    const add = async () => added((await addToLane(redis, l.queue, prefix, 'normal', [{ jobId, job }]))[0]!);
    expect(await add()).toMatchObject({ id: jobId, existing: false });
    const { job: taken, token } = await l.take();
    expect(await relayEvents(redis, prefix, jobId, [{ kind: 'start', model: SONNET, waitMs: 0, startedAt: Date.now() }, { kind: 'event', data: '{"type":"message_start"}' }], { first: true })).toBe('written');
    const failure = jobFailure(FailureCode.STREAM_FAILED, 'the connection was cut (after 1 events had been streamed)');
    const streamError = { kind: 'error' as const, data: '{"type":"error","error":{"type":"api_error","message":"cut"}}', failure };
    expect(await finishJob(redis, prefix, 'normal', l.backend, taken, token, { failed: failureText(failure), streamError })).toEqual({ status: 'finished' });
    const events = (await redis.xrange(jobEventsKey(prefix, jobId), '-', '+')).map(([, f]) => decodeJobEvent(f[0]!, f[1]!));
    expect(events.map((e) => e?.kind)).toEqual(['start', 'event', 'error']);
    expect(events.at(-1)).toEqual(streamError);
    expect(await redis.pttl(jobEventsKey(prefix, jobId))).toBeGreaterThan(0);
    // The caller read the failure: its repeat, sent at once, runs the job again rather than joining the failed run.
    expect(await add()).toMatchObject({ id: jobId, existing: false });
    expect(['waiting', 'prioritized']).toContain(await (await l.queue.getJob(jobId))!.getState());
    // The new run's relay starts empty: the failed run's events went with its record.
    expect(await redis.exists(jobEventsKey(prefix, jobId))).toBe(0);
  });

  it('reports a job whose lock is not the caller\'s as lost, and leaves it running and counted', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    await l.add({ tenant: 'acme' });
    const { job } = await l.take();
    const r = await finishJob(redis, prefix, 'normal', l.backend, job, 'someone-else', { completed: { answer: 1 } });
    expect(r.status).toBe('lost');
    expect(r.status === 'lost' && r.bullmqCode).toBeLessThan(0);
    expect(await job.getState()).toBe('active');
    expect(await redis.hget(l.k.usage, 'tenant:acme')).toBe('1');
  });
});

describe("one job's own commands", () => {
  it('writes the job\'s own fields in one HSET at its add, and its finish reads the job only in BullMQ\'s move', async () => {
    // The monitor first, from the file's connected client: a command from another connection at
    // the moment MONITOR answers (a fresh client's ready check, the lane's BullMQ connections
    // coming up) can share a read with its reply, which ioredis then takes for a reply to nothing
    // ("Command queue state error").
    const monitor = await redis.monitor();
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix, { models: { [SONNET]: { provider: 'anthropic', fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic' } } }));
    const l = lane(prefix);
    const seen: string[][] = [];
    let marked: (() => void) | undefined;
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toLowerCase() === 'echo') marked?.();
      else seen.push(args);
    });
    // Commands on the job's own hash since the last look, once the monitor has seen them all (an
    // ECHO sent after them comes through it last).
    const onJob = async (id: string) => {
      await new Promise<void>((resolve) => {
        marked = resolve;
        void redis.echo('seen');
      });
      return seen.splice(0).filter((a) => a[1] === `${l.k.jobKeyPrefix}${id}`).map((a) => a.slice(0, 1).concat(a.slice(2)));
    };
    try {
      const [added] = await l.add({ fallback: [HAIKU], maxWaitMs: 30_000, metadata: { team: 'x' } });
      const id = (added as Added).id;
      const adds = (await onJob(id)).filter(([c]) => c!.toLowerCase() === 'hset');
      // One HSET beside BullMQ's own write: the fair place, the fresh mark, the ladder and maxWaitMs.
      expect(adds).toHaveLength(1);
      for (const field of ['priority', 'hrRound', 'hrLow', 'opts', 'hrLadder', 'hrMaxWait']) expect(adds[0]).toContain(field);
      const stored = await redis.hgetall(`${l.k.jobKeyPrefix}${id}`);
      expect(JSON.parse(stored.opts!)).toMatchObject({ hrFresh: 1, hrAdmitted: id });
      expect(stored.hrLadder).toBe(`${SONNET}\n${HAIKU}`);
      expect(stored.hrMaxWait).toBe('30000');
      const usage = Number(await redis.hget(l.k.usage, 'bytes'));
      expect(usage).toBeGreaterThan(0);

      const { job, token } = await l.take();
      await onJob(id);
      expect(await finishJob(redis, prefix, 'normal', l.backend, job, token, { completed: { answer: 1 } })).toEqual({ status: 'finished' });
      // BullMQ's move looks the job up once; the release that follows it in the same call does not ask again.
      const reads = (await onJob(id)).filter(([c]) => ['exists', 'hexists'].includes(c!.toLowerCase()));
      expect(reads).toEqual([['EXISTS']]);
      expect(await redis.hget(l.k.unfinished, id)).toBeNull();
      expect(await redis.hget(l.k.usage, 'bytes')).toBeNull();
    } finally {
      monitor.disconnect();
    }
  });
});

describe('cancelIfNotStarted', () => {
  it('removes a waiting job, gives back its counts and tells its producer, in one call', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix, { tenants: { default: { maxQueued: 1 } } }));
    const l = lane(prefix);
    await addToLane(redis, l.queue, prefix, 'normal', [{ jobId: 'normal.w', job: llmJob({ tenant: 'acme' }), opts: { hrReplyTo: 'producer1' } as LaneEntry['opts'] }]);
    expect((await l.add({ tenant: 'acme' }))[0]).toMatchObject({ code: ErrorCode.QUOTA_EXCEEDED });
    expect(await cancelIfNotStarted(redis, prefix, 'normal.w')).toBe('removed');
    expect(await l.queue.getJob('normal.w')).toBeUndefined();
    expect(await l.size()).toBe(0);
    expect(await redis.hexists(l.k.unfinished, 'normal.w')).toBe(0);
    expect(await redis.hgetall(l.k.usage)).toEqual({});
    // BullMQ's own event for lane-event readers, and the entry for the producer that waits on it.
    const events = await redis.xrange(l.k.events, '-', '+');
    expect(events.some(([, f]) => f.includes('removed') && f.includes('normal.w'))).toBe(true);
    const replies = await redis.xrange(l.k.replies('producer1'), '-', '+');
    expect(replies.map(([, f]) => f)).toEqual([['j', 'normal.w', 'e', 'removed', 'v', '']]);
    // The tenant's slot is free at once.
    added((await l.add({ tenant: 'acme' }))[0]!);
  });

  it('removes a delayed job too; leaves a started one running and counted; says when there is nothing to cancel', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    const [a, b] = (await l.add({ tenant: 'acme' }, { tenant: 'acme' })).map((r) => added(r).id) as [string, string];
    const { job, token } = await l.take();
    expect(job.id).toBe(a);
    // A job told to wait goes back to its lane delayed, not started.
    const later = await l.take();
    expect(await returnToLane(redis, prefix, 'normal', b, later.token, { delayMs: 60_000, now: Date.now })).toMatchObject({ status: 'moved' });
    // A caller's own stop (keepShared) of a started job it alone waits on flags it in the same call.
    expect(await cancelIfNotStarted(redis, prefix, a, { keepShared: true, ifNotStarted: true })).toBe('started');
    expect(await redis.exists(l.k.jobCancel(a))).toBe(0);
    expect(await cancelIfNotStarted(redis, prefix, a)).toBe('flagged');
    expect(await redis.exists(l.k.jobCancel(a))).toBe(1);
    expect(await job.getState()).toBe('active');
    expect(await redis.hget(l.k.usage, 'tenant:acme')).toBe('2');
    expect(await (await l.queue.getJob(b))!.getState()).toBe('delayed');
    expect(await cancelIfNotStarted(redis, prefix, b)).toBe('removed');
    expect(await redis.hget(l.k.usage, 'tenant:acme')).toBe('1');
    expect(await finishJob(redis, prefix, 'normal', l.backend, job, token, { completed: { ok: true } })).toEqual({ status: 'finished' });
    expect(await cancelIfNotStarted(redis, prefix, a)).toBe('finished');
    expect(await (await l.queue.getJob(a))!.getState()).toBe('completed');
    expect(await cancelIfNotStarted(redis, prefix, 'normal.nope')).toBe('missing');
    expect(await cancelIfNotStarted(redis, prefix, 'no-lane')).toBe('missing');
  });
});

describe('a job cancelled as it runs', () => {
  it('is flagged in the call that finds no other caller, so a coalesced join after it makes a new job, and a repeat of its key is told it is stopping', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(redis, config(prefix));
    const l = lane(prefix);
    // A coalesced job (BullMQ's deduplication id is its coalescing key), and a job under an idempotency key.
    const coalesced = () => addToLane(redis, l.queue, prefix, 'normal', [{ jobId: `normal.${randomUUID()}`, job: llmJob({ coalesce: true }), opts: { deduplication: { id: 'same-request' } } }]);
    const keyed = idempotentJobId('normal', 'k');
    const repeatKey = () => addToLane(redis, l.queue, prefix, 'normal', [{ jobId: keyed, job: llmJob({ idempotencyKey: 'k' }) }]);
    const first = added((await coalesced())[0]!);
    expect(added((await repeatKey())[0]!).id).toBe(keyed);
    const { job: running, token } = await l.take();
    expect(running.id).toBe(first.id);
    const { job: keyedRunning, token: keyedToken } = await l.take();
    expect(keyedRunning.id).toBe(keyed);
    // The last (only) caller of each leaves while it runs: flagged in that call.
    expect(await cancelIfNotStarted(redis, prefix, first.id, { keepShared: true })).toBe('flagged');
    expect(await cancelIfNotStarted(redis, prefix, keyed, { keepShared: true })).toBe('flagged');
    // A join of the same request now is a job of its own, not a share of the one stopping.
    const join = added((await coalesced())[0]!);
    expect(join.id).not.toBe(first.id);
    // A repeat of the key is told its job is stopping, and takes no share of it (it would end CANCELLED with it)...
    const [repeat] = await repeatKey();
    expect(repeat).toBeInstanceOf(JobStoppingError);
    expect(await redis.hget(l.k.jobKeyPrefix + keyed, 'hrJoins')).toBeNull();
    // ...and once that job has ended CANCELLED, the repeat runs it again.
    expect(await finishJob(redis, prefix, 'normal', l.backend, keyedRunning, keyedToken, { failed: failureText(jobFailure(FailureCode.CANCELLED, 'cancelled by its caller')) })).toEqual({ status: 'finished' });
    expect(added((await repeatKey())[0]!)).toMatchObject({ id: keyed, existing: false });
    expect(await finishJob(redis, prefix, 'normal', l.backend, running, token, { failed: failureText(jobFailure(FailureCode.CANCELLED, 'cancelled by its caller')) })).toEqual({ status: 'finished' });
  });
});

describe('LaneUpkeep', () => {
  it('gives back jobs removed behind the fleet\'s back (Bull Board, BullMQ\'s stalled check)', async () => {
    const prefix = `ad-${randomUUID().slice(0, 8)}`;
    const cfg = config(prefix, { tenants: { default: { maxQueued: 3 } } });
    await publishFleetSettings(redis, cfg);
    const l = lane(prefix);
    const ids = (await l.add({ tenant: 'acme' }, { tenant: 'acme' }, { tenant: 'acme' })).map((r) => added(r).id);
    await l.queue.remove(ids[0]!);
    await l.queue.remove(ids[1]!);
    expect((await l.add({ tenant: 'acme' }))[0]).toMatchObject({ code: ErrorCode.QUOTA_EXCEEDED });
    const round = await new LaneUpkeep({ redis, config: cfg }).round();
    expect(round.released).toBe(2);
    expect(await redis.hget(l.k.usage, 'tenant:acme')).toBe('1');
  });
});
