import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { addToLane, publishFleetSettings, type Added } from './admission.js';
import { parseConfig } from './config.js';
import { redisForFile } from '@headroom/testing/vitest';
import type { LlmJob } from './job.js';
import { laneKeys } from './keys.js';
import { bringRunnableToFront, fairShareOnly, readyJobs } from './lane-fetch.js';

const db = redisForFile();
const queues: Queue[] = [];


afterAll(async () => {
  await Promise.all(queues.map((q) => q.close()));
});

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const FINE_TUNED = 'ft:gpt-4o-mini:acme:tagger:1';

/**
 * A NORMAL lane whose wait list holds jobs for these models, in the order given: the first is
 * the lane's front, taken next. Returns the lane's key prefix and the job ids in that order.
 */
async function laneWith(models: string[]): Promise<{ prefix: string; ids: string[] }> {
  const prefix = `lf-${randomUUID().slice(0, 8)}`;
  await publishFleetSettings(
    db.redis,
    parseConfig({
      redis: { prefix },
      models: { [SONNET]: { provider: 'anthropic', pool: 'sonnet-4' }, [HAIKU]: { provider: 'anthropic', pool: 'haiku-4' }, [FINE_TUNED]: { provider: 'openai' } },
    }),
  );
  const k = laneKeys(prefix, 'normal');
  const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.redis });
  queues.push(queue);
  const ids: string[] = [];
  for (const model of models) {
    const provider = model.startsWith('claude') ? 'anthropic' : 'openai';
    ids.push((await queue.add(`${provider}:${model}`, { model }, { jobId: `normal.${randomUUID()}` })).id!);
  }
  return { prefix, ids };
}

const sonnetJob = (extra: Partial<LlmJob>) => ({ priority: 'NORMAL', provider: 'anthropic', request: { model: SONNET, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }, ...extra }) as LlmJob;

/** A NORMAL lane (fair: its jobs in the prioritized set) with these jobs admitted, in order. */
async function admitted(jobs: LlmJob[]): Promise<{ prefix: string; ids: string[] }> {
  const { prefix } = await laneWith([]);
  const k = laneKeys(prefix, 'normal');
  const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.redis });
  queues.push(queue);
  const added = await addToLane(db.redis, queue, prefix, 'normal', jobs.map((job) => ({ jobId: `normal.${randomUUID()}`, job })));
  return { prefix, ids: added.map((a) => (a as Added).id) };
}

/** Backoffs of these pools in a NORMAL lane whose maxWaitMs is a minute, with no bucket wait known. */
const backedOff = (pools: string[], waitEnds?: Map<string, number>) => ({ pools, laneMaxWaitMs: 60_000, now: Date.now(), ...(waitEnds ? { waitEnds } : {}) });

/** What bringing a runnable job to the front did, when no job was taken for its fallback. */
async function frontOf(...args: Parameters<typeof bringRunnableToFront>): Promise<string> {
  const { outcome, fallsBack } = await bringRunnableToFront(...args);
  return fallsBack === undefined ? outcome : `${outcome} ${fallsBack}`;
}

/** The wait list from its front (the next job taken) back. */
async function order(prefix: string): Promise<string[]> {
  return (await db.redis.lrange(laneKeys(prefix, 'normal').wait, 0, -1)).reverse();
}

describe('bringRunnableToFront', () => {
  it('says empty for an empty lane, and front when the first job is runnable', async () => {
    const empty = await laneWith([]);
    expect(await frontOf(db.redis, empty.prefix, 'normal', backedOff(['sonnet-4']))).toBe('empty');
    const { prefix, ids } = await laneWith([HAIKU, SONNET]);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4']))).toBe('front');
    expect(await order(prefix)).toEqual(ids);
  });

  it('brings the first job of another pool to the front; the skipped jobs keep their order', async () => {
    const { prefix, ids } = await laneWith([SONNET, SONNET, HAIKU, SONNET, HAIKU]);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4']))).toBe('moved');
    expect(await order(prefix)).toEqual([ids[2], ids[0], ids[1], ids[3], ids[4]]);
  });

  it('reads the pool of a model whose id holds colons (a fine-tuned OpenAI model)', async () => {
    const { prefix, ids } = await laneWith([FINE_TUNED, SONNET]);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff([FINE_TUNED]))).toBe('moved');
    expect(await order(prefix)).toEqual([ids[1], ids[0]]);
  });

  it('says blocked when every job it looks at waits on a backed-off pool, and looks no deeper than asked', async () => {
    const { prefix, ids } = await laneWith([SONNET, HAIKU, SONNET]);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4', 'haiku-4']))).toBe('blocked');
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4']), 1)).toBe('blocked');
    expect(await order(prefix)).toEqual(ids);
  });

  it("looks past the wait list into a fair lane's prioritized set; the skipped jobs keep their places", async () => {
    const { prefix } = await laneWith([]);
    const k = laneKeys(prefix, 'normal');
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.redis });
    queues.push(queue);
    const job = (model: string) => ({ priority: 'NORMAL', provider: 'anthropic', tenant: 't', request: { model, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] } }) as LlmJob;
    const added = await addToLane(db.redis, queue, prefix, 'normal', [SONNET, SONNET, HAIKU].map((m) => ({ jobId: `normal.${randomUUID()}`, job: job(m) })));
    const ids = added.map((a) => (a as Added).id);
    expect(await db.redis.llen(k.wait)).toBe(0);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['haiku-4']))).toBe('front');
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4']))).toBe('moved');
    expect(await order(prefix)).toEqual([ids[2]]);
    expect(await db.redis.zrange(k.prioritized, '0', '-1')).toEqual([ids[0], ids[1]]);
    // With a job on the wait list, the prioritized set is looked at after it.
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['haiku-4']))).toBe('moved');
    expect(await order(prefix)).toEqual([ids[0], ids[2]]);
  });

  it("lets a fresh tenant's job past a pool backed off only for queued-up tenants (~pool), not past a full backoff", async () => {
    const { prefix } = await laneWith([]);
    const k = laneKeys(prefix, 'normal');
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.redis });
    queues.push(queue);
    const job = (tenant: string) => ({ priority: 'NORMAL', provider: 'anthropic', tenant, request: { model: SONNET, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] } }) as LlmJob;
    // A's first job is fresh (the lane was empty); its next two queued behind it are not.
    const added = await addToLane(db.redis, queue, prefix, 'normal', ['a', 'a', 'a'].map((t) => ({ jobId: `normal.${randomUUID()}`, job: job(t) })));
    const ids = added.map((a) => (a as Added).id);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff([fairShareOnly('sonnet-4')]))).toBe('front');
    // Take A's fresh job: the two queued-up ones are held back, a full backoff holds everything.
    await db.redis.zrem(k.prioritized, ids[0]!);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff([fairShareOnly('sonnet-4')]))).toBe('blocked');
    // B has nothing queued: its job starts at the lane's virtual time, first, and may run.
    const [b] = await addToLane(db.redis, queue, prefix, 'normal', [{ jobId: `normal.${randomUUID()}`, job: job('b') }]);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff([fairShareOnly('sonnet-4')]))).toBe('front');
    expect((await db.redis.zrange(k.prioritized, '0', '0'))[0]).toBe((b as Added).id);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4', fairShareOnly('sonnet-4')]))).toBe('blocked');
  });

  it("takes a job past its primary's backed-off pool for a fallback once the primary's wait would make it late, and only then", async () => {
    // Two plain Sonnet jobs ahead, then one that may fall back to Haiku within 5 s.
    const { prefix, ids } = await admitted([sonnetJob({}), sonnetJob({}), sonnetJob({ fallback: [HAIKU], maxWaitMs: 5_000 })]);
    const now = Date.now();
    // The bucket's wait for Sonnet ends within the job's 5 s: it waits its turn.
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4'], new Map([['sonnet-4', now + 2_000]])))).toBe('blocked');
    // No wait known (a backoff from a worker of an older version): nothing to judge lateness by.
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4']))).toBe('blocked');
    // Its fallback's pool is backed off too: nowhere to go.
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4', 'haiku-4'], new Map([['sonnet-4', now + 30_000]])))).toBe('blocked');
    // The wait for Sonnet passes its deadline, and Haiku is open: taken ahead of the two.
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4'], new Map([['sonnet-4', now + 30_000]])))).toBe(`moved ${ids[2]}`);
    expect((await order(prefix))[0]).toBe(ids[2]);
  });

  it("takes a job past its failing primary's backed-off pool for an open fallback at once, whatever its deadline", async () => {
    // Jobs without a ladder retrying a failing Sonnet keep its pool backed off; behind them, one with Haiku.
    const { prefix, ids } = await admitted([sonnetJob({ fallback: [] }), sonnetJob({ fallback: [] }), sonnetJob({ fallback: [HAIKU] })]);
    const now = Date.now();
    // The throttle's wait (a probe a second) is far within the job's deadline: without word of the failure, it waits.
    const probing = backedOff(['sonnet-4'], new Map([['sonnet-4', now + 900]]));
    expect(await frontOf(db.redis, prefix, 'normal', probing)).toBe('blocked');
    // Sonnet failing: taken for Haiku now, ahead of the two that have nowhere to go.
    expect(await frontOf(db.redis, prefix, 'normal', { ...probing, failingModels: [SONNET] })).toBe(`moved ${ids[2]}`);
    expect((await order(prefix))[0]).toBe(ids[2]);
    // Also with no bucket wait known; never to a fallback that is failing too, or whose pool is backed off.
    const { prefix: p2, ids: ids2 } = await admitted([sonnetJob({ fallback: [HAIKU] })]);
    expect(await frontOf(db.redis, p2, 'normal', { ...backedOff(['sonnet-4']), failingModels: [SONNET, HAIKU] })).toBe('blocked');
    expect(await frontOf(db.redis, p2, 'normal', { ...backedOff(['sonnet-4', 'haiku-4']), failingModels: [SONNET] })).toBe('blocked');
    expect(await frontOf(db.redis, p2, 'normal', { ...backedOff(['sonnet-4']), failingModels: [SONNET] })).toBe(`front ${ids2[0]}`);
  });

  it("counts the jobs of the primary's pool ahead of a job, each at the pool's pace, after the bucket's wait", async () => {
    const late = (maxWaitMs: number) => sonnetJob({ fallback: [HAIKU], maxWaitMs });
    // Three plain Sonnet jobs, then one that must start within 2 s and one within 4.5 s, both with Haiku.
    const { prefix, ids } = await admitted([sonnetJob({}), sonnetJob({}), sonnetJob({}), late(2_000), late(4_500)]);
    const k = laneKeys(prefix, 'normal');
    const now = Date.now();
    const waitOf = (paceMs: number) => ({ ...backedOff(['sonnet-4'], new Map([['sonnet-4', now + 500]])), paces: new Map([['sonnet-4', paceMs]]) });
    // The bucket's wait alone (0.5 s) is within both deadlines, and so it is at an unknown pace.
    expect(await frontOf(db.redis, prefix, 'normal', waitOf(0))).toBe('blocked');
    // At a second a job, the first late one starts 3.5 s out: past its 2 s, it is taken for Haiku.
    expect(await frontOf(db.redis, prefix, 'normal', waitOf(1_000))).toBe(`moved ${ids[3]}`);
    expect(await order(prefix)).toEqual([ids[3]]);
    // Gone to Haiku, it is not ahead of the last, which starts 3.5 s out: within its 4.5 s, it waits its turn.
    await db.redis.lrem(k.wait, 1, ids[3]!);
    expect(await frontOf(db.redis, prefix, 'normal', waitOf(1_000))).toBe('blocked');
    expect(await frontOf(db.redis, prefix, 'normal', waitOf(1_500))).toBe(`moved ${ids[4]}`);
  });

  it("falls back by the primary's configured ladder, past the lane's maxWaitMs for a job without its own", async () => {
    const prefix = `lf-${randomUUID().slice(0, 8)}`;
    await publishFleetSettings(
      db.redis,
      parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic', pool: 'sonnet-4', fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic', pool: 'haiku-4' } } }),
    );
    const k = laneKeys(prefix, 'normal');
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.redis });
    queues.push(queue);
    const job = { priority: 'NORMAL', provider: 'anthropic', request: { model: SONNET, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] } } as LlmJob;
    const added = await addToLane(db.redis, queue, prefix, 'normal', [job, job].map((j) => ({ jobId: `normal.${randomUUID()}`, job: j })));
    const ids = added.map((a) => (a as Added).id);
    const ends = new Map([['sonnet-4', Date.now() + 90_000]]);
    // A 90 s wait for Sonnet passes the lane's minute: the first job goes down its configured ladder.
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4'], ends))).toBe(`front ${ids[0]}`);
    expect(await db.redis.zrange(k.prioritized, '0', '0')).toEqual([ids[0]]);
    // With a lane of 5 minutes, neither is late yet.
    expect(await frontOf(db.redis, prefix, 'normal', { ...backedOff(['sonnet-4'], ends), laneMaxWaitMs: 300_000 })).toBe('blocked');
    // A job that asks for no fallback (fallback: []) is never taken for the configured one: it had
    // nowhere to go, and its worker sent it straight back, round after round.
    await db.redis.del(k.prioritized);
    const [none] = await addToLane(db.redis, queue, prefix, 'normal', [{ jobId: `normal.${randomUUID()}`, job: { ...job, fallback: [] } }]);
    expect(await db.redis.hget(`${k.jobKeyPrefix}${(none as Added).id}`, 'hrLadder')).toBe(`${SONNET}\n`);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff(['sonnet-4'], ends))).toBe('blocked');
    expect(await frontOf(db.redis, prefix, 'normal', { ...backedOff(['sonnet-4'], ends), failingModels: [SONNET] })).toBe('blocked');
  });

  it('passes over a job whose hash is gone', async () => {
    const { prefix, ids } = await laneWith([SONNET, HAIKU]);
    await db.redis.del(`${laneKeys(prefix, 'normal').jobKeyPrefix}${ids[0]}`);
    expect(await frontOf(db.redis, prefix, 'normal', backedOff([]))).toBe('moved');
    expect((await order(prefix))[0]).toBe(ids[1]);
  });
});

describe('readyJobs', () => {
  it('counts what a fetch could take in each lane (waiting, fair-queued, delayed and due; 0 when paused) in one call, and clears an empty lane\'s stale marker', async () => {
    const { prefix } = await laneWith([SONNET, HAIKU]);
    const high = laneKeys(prefix, 'high');
    const low = laneKeys(prefix, 'low');
    const queue = (k: typeof high) => {
      const q = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.redis });
      queues.push(q);
      return q;
    };
    const highQ = queue(high);
    const lowQ = queue(low);
    const now = Date.now();
    // HIGH: one job due now, one delayed for a minute; CRITICAL: nothing, but a stale marker.
    await highQ.add('anthropic:x', {}, { jobId: 'high.1', delay: 1 });
    await highQ.add('anthropic:x', {}, { jobId: 'high.2', delay: 60_000 });
    await db.redis.zadd(laneKeys(prefix, 'critical').marker, 0, '0');
    await lowQ.add('anthropic:x', {}, { jobId: 'low.1' });
    await lowQ.pause();
    expect(await readyJobs(db.redis, prefix, ['critical', 'high', 'normal', 'low'], now + 10)).toEqual([0, 1, 2, 0]);
    // Empty: its base marker is gone, so an idle worker does not wake for it; HIGH's delay marker stays.
    expect(await db.redis.zrange(laneKeys(prefix, 'critical').marker, '0', '-1')).toEqual([]);
    expect(await db.redis.zrange(high.marker, '0', '-1')).toContain('1');
    expect(await readyJobs(db.redis, prefix, ['high'], now + 120_000)).toEqual([2]);
  });
});
