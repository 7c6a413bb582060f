/**
 * A shared job's start deadline, on a real Redis: a caller joining it (a coalesced join, a repeat
 * of its idempotency key) with a later deadline, or none, moves the job's to its own, where the
 * worker's fetch reads it (its options) and the front-of-lane script does (`hrMaxWait`).
 */
import { randomUUID } from 'node:crypto';
import { Job, Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { redisForFile } from '@headroom/testing/vitest';
import { addToLane, publishFleetSettings, type Added } from './admission.js';
import { parseConfig } from './config.js';
import type { LlmJob } from './job.js';
import { coalesceKeyOf, idempotentJobId } from './job-ids.js';
import { laneKeys } from './keys.js';
import { cancelIfNotStarted } from './lane-cancel.js';
import { SHARED_MAX_WAIT_OPTION, withSharedDeadline } from './shared-deadline.js';

const db = redisForFile();
const queues: Queue[] = [];
afterAll(() => Promise.all(queues.map((q) => q.close())));

const SONNET = 'claude-sonnet-4-6';
/** The first caller's enqueue (BullMQ's timestamp, given here so the arithmetic is exact). */
const T0 = 1_800_000_000_000;

/** A HIGH lane on a prefix of its own, its fleet's settings published. */
async function highLane() {
  const prefix = `t${randomUUID().slice(0, 8)}`;
  await publishFleetSettings(db.redis, parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic' } } }));
  const k = laneKeys(prefix, 'high');
  const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: db.redis });
  queues.push(queue);
  /** Coalesced unless it has a key and `coalesce` is false. */
  const ask = (maxWaitMs?: number, idempotencyKey?: string, coalesce = idempotencyKey === undefined): LlmJob =>
    ({
      priority: 'HIGH',
      provider: 'anthropic',
      request: { model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'the same question' }] },
      ...(maxWaitMs === undefined ? {} : { maxWaitMs }),
      ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
      ...(coalesce ? { coalesce } : {}),
    }) as LlmJob;
  const join = async (job: LlmJob, at: number): Promise<Added> => {
    const jobId = job.idempotencyKey ? idempotentJobId('high', job.idempotencyKey) : `high.${randomUUID()}`;
    const opts = { timestamp: at, ...(job.coalesce ? { deduplication: { id: coalesceKeyOf(job) } } : {}) };
    const [added] = await addToLane(db.redis, queue, prefix, 'high', [{ jobId, job, opts }]);
    return added as Added;
  };
  return {
    k,
    /** Enqueues `job` as a producer would, BullMQ's timestamp `at`; the id of the job it is in. */
    enqueue: async (job: LlmJob, at: number): Promise<string> => (await join(job, at)).id,
    /** Enqueues `job` as `enqueue` does; the caller, who can leave the job as a producer's caller does. */
    join,
    /** The caller gives back its share, naming its deadline, as a producer's caller that stops waiting does. */
    leave: (caller: Added) => cancelIfNotStarted(db.redis, prefix, caller.id, { keepShared: true, ifNotStarted: true, ...(caller.callerDeadline === undefined ? {} : { callerDeadline: caller.callerDeadline }) }),
    ask,
    /** The deadline the job's hash gives `front-runnable-4.lua`. */
    stored: (id: string) => db.redis.hget(`${k.jobKeyPrefix}${id}`, 'hrMaxWait'),
    /** The job as its worker runs it: read as BullMQ's fetch reads it (`Job.fromJSON` of its hash). */
    taken: async (id: string): Promise<LlmJob> => {
      const job = await Job.fromId(queue, id);
      if (!job) throw new Error(`no job ${id}`);
      return withSharedDeadline(job.data as LlmJob, job.opts);
    },
  };
}

describe("a shared job's start deadline", () => {
  it("moves to a coalesced joiner's later deadline, counted from the job's enqueue; an earlier one leaves it", async () => {
    const lane = await highLane();
    const id = await lane.enqueue(lane.ask(1_500), T0);
    // B joins 1 s later and would wait 5 s: the job waits until 6 s after its enqueue.
    expect(await lane.enqueue(lane.ask(5_000), T0 + 1_000)).toBe(id);
    expect(await lane.stored(id)).toBe('6000');
    // C's deadline (2 s + 1 s) falls before it: nothing moves.
    expect(await lane.enqueue(lane.ask(1_000), T0 + 2_000)).toBe(id);
    expect(await lane.stored(id)).toBe('6000');
    const taken = await lane.taken(id);
    expect(taken.maxWaitMs).toBe(6_000);
    // The job itself is what its first caller sent: only the deadline is the callers'.
    expect(taken.request).toEqual(lane.ask(1_500).request);
  });

  it('is lifted by a joiner with none, and no later joiner brings one back', async () => {
    const lane = await highLane();
    const id = await lane.enqueue(lane.ask(1_500), T0);
    expect(await lane.enqueue(lane.ask(), T0 + 1_000)).toBe(id);
    expect(await lane.enqueue(lane.ask(2_000), T0 + 2_000)).toBe(id);
    expect(await lane.stored(id)).toBeNull();
    const taken = await lane.taken(id);
    expect(taken.maxWaitMs).toBeUndefined();
    expect(taken).not.toHaveProperty('maxWaitMs');
  });

  it("moves to an idempotency key's repeat's deadline, counted from the repeat's enqueue (the repeat is a caller of its own)", async () => {
    const lane = await highLane();
    const id = await lane.enqueue(lane.ask(1_500, 'key-1'), T0);
    expect(await lane.enqueue(lane.ask(1_500, 'key-1'), T0 + 1_000)).toBe(id);
    expect(await lane.stored(id)).toBe('2500');
    expect((await lane.taken(id)).maxWaitMs).toBe(2_500);
  });

  it("moves to the deadline of a repeat of a key that coalesced into the job (its alias), from the repeat's enqueue", async () => {
    const lane = await highLane();
    const id = await lane.enqueue(lane.ask(1_500, 'key-a', true), T0);
    expect(await lane.enqueue(lane.ask(1_500, 'key-b', true), T0 + 1_000)).toBe(id);
    expect(await lane.stored(id)).toBe('2500');
    expect(await lane.enqueue(lane.ask(1_500, 'key-b', true), T0 + 3_000)).toBe(id);
    expect(await lane.stored(id)).toBe('4500');
    expect((await lane.taken(id)).maxWaitMs).toBe(4_500);
  });

  it('stays the job\'s own while no one joined it', async () => {
    const lane = await highLane();
    const id = await lane.enqueue(lane.ask(1_500), T0);
    expect(await lane.stored(id)).toBe('1500');
    const taken = await lane.taken(id);
    expect(taken.maxWaitMs).toBe(1_500);
    expect(withSharedDeadline(taken, { [SHARED_MAX_WAIT_OPTION]: null })).not.toHaveProperty('maxWaitMs');
  });

  it('moves back to the latest deadline of the callers still waiting when the caller with the latest leaves', async () => {
    const lane = await highLane();
    const a = await lane.join(lane.ask(1_500), T0);
    const b = await lane.join(lane.ask(9_000), T0 + 1_000);
    const c = await lane.join(lane.ask(3_000), T0 + 2_000);
    expect(b.id).toBe(a.id);
    expect(c.id).toBe(a.id);
    expect(await lane.stored(a.id)).toBe('10000');
    // B, the latest, leaves: C's 5 s is the latest of those left, where the worker reads it too.
    expect(await lane.leave(b)).toBe('shared');
    expect(await lane.stored(a.id)).toBe('5000');
    expect((await lane.taken(a.id)).maxWaitMs).toBe(5_000);
    // C leaves: A's own is the job's again.
    expect(await lane.leave(c)).toBe('shared');
    expect(await lane.stored(a.id)).toBe('1500');
    expect((await lane.taken(a.id)).maxWaitMs).toBe(1_500);
  });

  it('brings a deadline back when the caller with none leaves, and keeps none while another with none waits', async () => {
    const lane = await highLane();
    const a = await lane.join(lane.ask(1_500), T0);
    const b = await lane.join(lane.ask(), T0 + 1_000);
    const c = await lane.join(lane.ask(), T0 + 2_000);
    const d = await lane.join(lane.ask(4_000), T0 + 3_000);
    expect(await lane.stored(a.id)).toBeNull();
    expect(await lane.leave(b)).toBe('shared');
    expect(await lane.stored(a.id)).toBeNull();
    expect(await lane.leave(c)).toBe('shared');
    expect(await lane.stored(a.id)).toBe('7000');
    expect((await lane.taken(a.id)).maxWaitMs).toBe(7_000);
    // A caller leaving whose deadline is not the latest moves nothing.
    expect(await lane.leave(a)).toBe('shared');
    expect(await lane.stored(d.id)).toBe('7000');
  });

  it("moves back when an idempotency key's repeat with the latest deadline leaves", async () => {
    const lane = await highLane();
    const first = await lane.join(lane.ask(1_500, 'key-r'), T0);
    const repeat = await lane.join(lane.ask(6_000, 'key-r'), T0 + 1_000);
    expect(await lane.stored(first.id)).toBe('7000');
    expect(await lane.leave(repeat)).toBe('shared');
    expect(await lane.stored(first.id)).toBe('1500');
    expect((await lane.taken(first.id)).maxWaitMs).toBe(1_500);
  });
});
