/**
 * Fair sharing inside a lane, on a real Redis: the add script places each job by its tenant's
 * tokens (lua/includes/fair-queue.lua), BullMQ's own fetch takes them in that order, and a job put
 * back takes its own place again.
 */
import { randomUUID } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { redisForFile } from '@headroom/testing/vitest';
import { addToLane, publishFleetSettings, type Added } from './admission.js';
import { parseConfig, type HeadroomConfigInput } from './config.js';
import { HeadroomError } from './errors.js';
import type { LlmJob } from './job.js';
import { laneKeys } from './keys.js';
import { forceReturnToLane, returnToLane } from './lane-return.js';
import { fairCostArg } from './tenant-fairness.js';

const db = redisForFile();
const closers: { close(): Promise<unknown> }[] = [];
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
});

const SONNET = 'claude-sonnet-4-6';
/** BullMQ's priority ceiling: a score past 2^21 x 2^32 is no longer an exact double. */
const MAX_PRIORITY = 2 ** 21 - 1;

function llmJob(tenant: string | undefined, maxTokens: number): LlmJob {
  return {
    priority: 'NORMAL',
    provider: 'anthropic',
    ...(tenant === undefined ? {} : { tenant }),
    request: { model: SONNET, max_tokens: maxTokens, messages: [{ role: 'user', content: 'hi' }] },
  } as LlmJob;
}

async function fairLane(extra: Partial<HeadroomConfigInput> = {}) {
  const prefix = `tf-${randomUUID().slice(0, 8)}`;
  await publishFleetSettings(db.workerRedis, parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic' } }, lanes: { normal: { cap: 10_000 } }, ...extra }));
  const k = laneKeys(prefix, 'normal');
  const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.workerRedis });
  const worker = new Worker(k.queueName, null, { prefix: k.bullPrefix, connection: db.workerRedis, autorun: false, skipLockRenewal: true });
  closers.push(queue, worker);
  /** Tenant of each job id, and its cost as the producer sends it. */
  const tenantOf = new Map<string, string>();
  let n = 0;
  return {
    k,
    prefix,
    tenantOf,
    async add(tenant: string | undefined, maxTokens: number, count = 1): Promise<string[]> {
      const entries = Array.from({ length: count }, () => ({ jobId: `normal.${tenant ?? 'anon'}.${randomUUID()}`, job: llmJob(tenant, maxTokens) }));
      const out = await addToLane(db.workerRedis, queue, prefix, 'normal', entries);
      return out.map((r, i) => {
        if (r instanceof HeadroomError) throw r;
        tenantOf.set((r as Added).id, tenant ?? '');
        return entries[i]!.jobId;
      });
    },
    /** The next job BullMQ's own fetch takes, or undefined. */
    async take(): Promise<{ job: Job; token: string } | undefined> {
      const token = `t${++n}`;
      const job = await worker.getNextJob(token, { block: false });
      return job ? { job, token } : undefined;
    },
    async takeAll(): Promise<string[]> {
      const ids: string[] = [];
      for (let got = await this.take(); got; got = await this.take()) ids.push(got.job.id!);
      return ids;
    },
  };
}

/** A job's cost as the add script charged it. */
const costOf = (maxTokens: number, tenant?: string) => {
  const job = llmJob(tenant, maxTokens);
  return Number(fairCostArg(job, JSON.stringify(job).length, 'normal'));
};

describe('fair sharing inside a lane', () => {
  it('interleaves two tenants by tokens: a later tenant is not served behind the first one\'s backlog', async () => {
    const lane = await fairLane();
    // A offers 20 jobs of ~2k tokens first; B then 40 of ~500: by tokens, ~4 of B's per one of A's.
    const a = await lane.add('a', 2000, 20);
    const b = await lane.add('b', 500, 40);
    const order = await lane.takeAll();
    expect(order).toHaveLength(60);
    // Each tenant's own jobs in enqueue order.
    expect(order.filter((id) => lane.tenantOf.get(id) === 'a')).toEqual(a);
    expect(order.filter((id) => lane.tenantOf.get(id) === 'b')).toEqual(b);
    // While both have work, neither runs ahead of the other by more than a job of each (start-time
    // fair queueing's bound: the order is by start tag to the token).
    const bound = costOf(2000, 'a') + costOf(500, 'b');
    const served = { a: 0, b: 0 };
    for (const id of order) {
      const t = lane.tenantOf.get(id) as 'a' | 'b';
      served[t] += t === 'a' ? costOf(2000, 'a') : costOf(500, 'b');
      if (served.a < 20 * costOf(2000, 'a') && served.b < 40 * costOf(500, 'b')) expect(Math.abs(served.a - served.b)).toBeLessThanOrEqual(bound);
    }
    // B's first job is served right after A's first, not after A's 20.
    expect(order.indexOf(b[0]!)).toBe(1);
  });

  it('gives a tenant with work to itself all of the lane, in enqueue order (work-conserving)', async () => {
    const lane = await fairLane();
    const b = await lane.add('b', 100, 3);
    expect(await lane.takeAll()).toEqual(b);
    // B went idle: its past does not count against it, and A alone is served every job it offers.
    const a = await lane.add('a', 4000, 25);
    const later = await lane.add('b', 100, 1);
    const order = await lane.takeAll();
    expect(order.filter((id) => id !== later[0])).toEqual(a);
    expect(order.indexOf(later[0]!)).toBeLessThanOrEqual(1);
  });

  it("marks a job fresh when its tenant had nothing queued ahead of it, in its options BullMQ's fetch returns", async () => {
    const lane = await fairLane();
    const a = await lane.add('a', 100, 3);
    const b = await lane.add('b', 100, 1);
    const b2 = await lane.add('b', 100, 1);
    const fresh = new Map<string, unknown>();
    const otherOpts = new Set<string>();
    for (let got = await lane.take(); got; got = await lane.take()) {
      const { hrFresh, hrAdmitted, ...rest } = got.job.opts as Record<string, unknown>;
      fresh.set(got.job.id!, hrFresh);
      expect(hrAdmitted).toBe(got.job.id);
      otherOpts.add(JSON.stringify(rest));
    }
    // The mark is added to the options BullMQ stored, which are otherwise untouched: the same for
    // all (but admission's own mark, each job's id).
    expect(otherOpts.size).toBe(1);
    // A's first job found the lane empty; its next two queued behind it. B's first started at the
    // lane's virtual time (nothing of B's queued), its second behind its first.
    expect([a[0], a[1], a[2], b[0], b2[0]].map((id) => fresh.get(id!))).toEqual([1, undefined, undefined, 1, undefined]);
  });

  it('counts jobs without a tenant as one anonymous tenant', async () => {
    const lane = await fairLane();
    const anon = await lane.add(undefined, 1000, 10);
    const named = await lane.add('n', 1000, 2);
    const order = await lane.takeAll();
    expect(order.filter((id) => lane.tenantOf.get(id) === '')).toEqual(anon);
    expect(order.indexOf(named[1]!)).toBeLessThan(6);
  });

  it('weights a tenant by its configured share', async () => {
    const lane = await fairLane({ tenants: { default: {}, overrides: { big: { weight: 3 } } } });
    await lane.add('big', 1000, 30);
    await lane.add('small', 1000, 30);
    const first = (await lane.takeAll()).slice(0, 20);
    const big = first.filter((id) => lane.tenantOf.get(id) === 'big').length;
    expect(big).toBeGreaterThanOrEqual(14);
    expect(big).toBeLessThanOrEqual(16);
  });

  it('keeps every score exact through a long run: rebases past 2^20 rounds, clamps at BullMQ\'s ceiling, stays fair after', async () => {
    // One whale job at weight 0.01 is ~10^8 tokens: ~98k rounds of the lane's virtual time.
    const lane = await fairLane({ tenants: { default: {}, overrides: { whale: { weight: 0.01 } } } });
    const assertExact = async () => {
      const entries = await db.workerRedis.zrange(lane.k.prioritized, '0', '-1', 'WITHSCORES');
      for (let i = 1; i < entries.length; i += 2) {
        const score = Number(entries[i]);
        expect(Number.isSafeInteger(score)).toBe(true);
        const p = Math.floor(score / 2 ** 32);
        expect(p).toBeGreaterThanOrEqual(1);
        expect(p).toBeLessThanOrEqual(MAX_PRIORITY);
        expect(Number(await db.workerRedis.hget(`${lane.k.jobKeyPrefix}${entries[i - 1]}`, 'priority'))).toBe(p);
      }
    };
    const whale = await lane.add('whale', 1_000_000, 30);
    // 30 jobs span ~2.9M rounds: the last ones are clamped to the ceiling, in enqueue order.
    await assertExact();
    const taken: string[] = [];
    for (let i = 0; i < 15; i++) taken.push((await lane.take())!.job.id!);
    // The head is now ~1.4M rounds past the base: the next enqueue rebases the lane.
    const baseBefore = Number(await db.workerRedis.hget(lane.k.fair, 'base'));
    const more = await lane.add('whale', 1_000_000, 10);
    expect(Number(await db.workerRedis.hget(lane.k.fair, 'base'))).toBeGreaterThan(baseBefore + 2 ** 20);
    await assertExact();
    // A small tenant arriving now starts just before the head's tag: served next, not after the
    // whale's backlog.
    const minnow = await lane.add('minnow', 100, 1);
    await assertExact();
    const rest = await lane.takeAll();
    expect(rest[0]).toBe(minnow[0]);
    expect([...taken, ...rest.filter((id) => id !== minnow[0])]).toEqual([...whale, ...more]);
  });
});

describe('order within a lane when jobs are put back', () => {
  it('puts requeued jobs back in their enqueue order, whatever order their requeues run in', async () => {
    const lane = await fairLane();
    const ids = await lane.add('a', 100, 5);
    const taken = [await lane.take(), await lane.take(), await lane.take()].map((t) => t!);
    expect(taken.map((t) => t.job.id)).toEqual(ids.slice(0, 3));
    // Told to wait for quota, they are put back last-taken first (the timing order that used to win).
    for (const t of [...taken].reverse()) expect((await returnToLane(db.workerRedis, lane.prefix, 'normal', t.job.id!, t.token)).status).toBe('moved');
    expect(await lane.takeAll()).toEqual(ids);
  });

  it('keeps the places of jobs handed back on shutdown, in the fair order', async () => {
    const lane = await fairLane();
    // ~1k tokens each: a round apiece, so the fair order is a, b, a, b.
    const a = await lane.add('a', 1000, 2);
    const b = await lane.add('b', 1000, 2);
    const first = (await lane.take())!;
    const second = (await lane.take())!;
    await forceReturnToLane(db.workerRedis, lane.prefix, 'normal', second.job.id!, second.token);
    await forceReturnToLane(db.workerRedis, lane.prefix, 'normal', first.job.id!, first.token);
    expect(await lane.takeAll()).toEqual([a[0], b[0], a[1], b[1]]);
  });

  it('puts a job back ahead of the jobs enqueued while it ran, even after the lane emptied meanwhile', async () => {
    const lane = await fairLane();
    const [first] = await lane.add('a', 1000, 1);
    const t = (await lane.take())!;
    // The lane is empty while it runs: the next jobs start a new base.
    const later = await lane.add('b', 1000, 2);
    expect((await returnToLane(db.workerRedis, lane.prefix, 'normal', t.job.id!, t.token)).status).toBe('moved');
    expect(await lane.takeAll()).toEqual([first, ...later]);
  });

  it('brings a job delayed for a retry back to its own round, ahead of the jobs behind it', async () => {
    const lane = await fairLane();
    // ~1k tokens each: one round apiece.
    const ids = await lane.add('a', 1000, 3);
    const t = (await lane.take())!;
    expect((await returnToLane(db.workerRedis, lane.prefix, 'normal', t.job.id!, t.token, { delayMs: 1 })).status).toBe('moved');
    await new Promise((r) => setTimeout(r, 20));
    expect(await lane.takeAll()).toEqual(ids);
  });

  it('wakes idle workers when a job is put back into the prioritized set', async () => {
    const lane = await fairLane();
    const [id] = await lane.add('a', 100, 1);
    const t = (await lane.take())!;
    await db.workerRedis.del(lane.k.marker);
    await returnToLane(db.workerRedis, lane.prefix, 'normal', id!, t.token);
    expect(await db.workerRedis.zscore(lane.k.marker, '0')).toBe('0');
  });
});
