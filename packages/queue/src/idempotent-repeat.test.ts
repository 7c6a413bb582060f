/**
 * An idempotency key's repeat, on a real Redis through the add script: it is the key's job when it
 * asks for the same job in the form coalescing reads (documented defaults written out or left
 * out, betas in any order), and refused naming the job when it asks for another. Jobs and aliases
 * stored by the version before the digest are compared as that version did, byte for byte.
 */
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { redisForFile } from '@headroom/testing/vitest';
import { addToLane, publishFleetSettings, rememberHandOff, type Added } from './admission.js';
import { parseConfig } from './config.js';
import { ErrorCode, HeadroomError } from './errors.js';
import { handOffJobId, idempotencyDigestOf, idempotentJobId } from './job-ids.js';
import type { LlmJob, LlmJobInput } from './job.js';
import { parseJob } from './job-validation.js';
import { laneHandle } from './lane-handle.test-support.js';
import type { Lane } from './lanes.js';

const db = redisForFile();
const closers: { close(): Promise<unknown> }[] = [];
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
});

const SONNET = 'claude-sonnet-4-6';
const GPT = 'gpt-4.1';

async function fleet(lane: Lane = 'normal') {
  const prefix = `ir-${randomUUID().slice(0, 8)}`;
  await publishFleetSettings(db.redis, parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic' }, [GPT]: { provider: 'openai' } } }));
  const handle = laneHandle(db.workerRedis, prefix, lane, closers);
  /** Adds `job` (parsed, as the producer does) under `jobId`, with BullMQ options `opts`. */
  const add = async (jobId: string, job: LlmJobInput, opts?: { deduplication: { id: string } }) => (await addToLane(db.redis, handle.queue, prefix, lane, [{ jobId, job: parseJob(job).job, ...(opts ? { opts } : {}) }]))[0]!;
  return { prefix, ...handle, add };
}

const claude = (extra: Record<string, unknown> = {}, request: Record<string, unknown> = {}) =>
  ({ priority: 'NORMAL', provider: 'anthropic', idempotencyKey: 'k', request: { model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'Same question' }], ...request }, ...extra }) as LlmJobInput;
const chat = (request: Record<string, unknown> = {}) =>
  ({ priority: 'NORMAL', provider: 'openai', idempotencyKey: 'c', request: { model: GPT, max_completion_tokens: 64, messages: [{ role: 'user', content: 'Same question' }], ...request } }) as LlmJobInput;

const added = (r: Added | HeadroomError): Added => {
  if (r instanceof HeadroomError) throw r;
  return r;
};

/** The refusal a repeat under a key holding another job gets: JOB_INVALID on the key, naming `jobId`. */
const conflictNaming = (jobId: string) => ({ code: ErrorCode.JOB_INVALID, issues: [{ path: 'idempotencyKey', message: expect.stringContaining(`already names job ${jobId}, which holds a different job`) }] });

describe("an idempotency key's repeat", () => {
  it('is the same job when it writes out a documented default the first left out, names its betas in another order, or orders its fields otherwise', async () => {
    const l = await fleet();
    const id = idempotentJobId('normal', 'k');
    expect(await l.add(id, claude({ betas: ['token-efficient-tools-2025-02-19', 'context-1m-2025-08-07'] }))).toMatchObject({ id, existing: false });
    // Another SDK, or a hand-written curl, retrying the call: `"stream": false`, the betas sorted, the keys reordered, a deadline of its own.
    const retry = { idempotencyKey: 'k', maxWaitMs: 9_000, betas: ['context-1m-2025-08-07', 'token-efficient-tools-2025-02-19'], request: { stream: false, messages: [{ content: 'Same question', role: 'user' }], max_tokens: 64, model: SONNET }, provider: 'anthropic', priority: 'NORMAL' } as LlmJobInput;
    expect(await l.add(id, retry)).toMatchObject({ id, existing: true });
    expect(await db.redis.hget(`${l.k.jobKeyPrefix}${id}`, 'hrJoins')).toBe('1');

    const chatId = idempotentJobId('normal', 'c');
    expect(await l.add(chatId, chat())).toMatchObject({ id: chatId, existing: false });
    for (const written of [{ n: 1 }, { stream: false }, { stream: null, stream_options: null, temperature: null }, { n: null, max_tokens: null }]) {
      expect(await l.add(chatId, chat(written)), JSON.stringify(written)).toMatchObject({ id: chatId, existing: true });
    }
    // One job each, nothing else added.
    expect(await db.redis.zcard(l.k.prioritized)).toBe(2);
  });

  it('is refused naming the job when it asks for another: the prompt, max_tokens, the model, a stream, another n, metadata, a ladder', async () => {
    const l = await fleet();
    const id = idempotentJobId('normal', 'k');
    added(await l.add(id, claude()));
    const others: LlmJobInput[] = [
      claude({}, { messages: [{ role: 'user', content: 'Another question' }] }),
      claude({}, { max_tokens: 65 }),
      claude({}, { model: 'claude-haiku-4-5' }),
      claude({}, { stream: true }),
      claude({}, { temperature: 1 }),
      claude({ metadata: { order: 2 } }),
      claude({ fallback: [] }),
      claude({ betas: ['context-1m-2025-08-07'] }),
      claude({ coalesce: true }),
    ];
    for (const other of others) expect(await l.add(id, other), JSON.stringify(other)).toMatchObject(conflictNaming(id));
    const chatId = idempotentJobId('normal', 'c');
    added(await l.add(chatId, chat()));
    expect(await l.add(chatId, chat({ n: 2 }))).toMatchObject(conflictNaming(chatId));
    // The first job is untouched: still one, with no share added by a refusal.
    expect(await db.redis.zcard(l.k.prioritized)).toBe(2);
    expect(await db.redis.hget(`${l.k.jobKeyPrefix}${id}`, 'hrJoins')).toBeNull();
  });

  it('to a job stored before the digest (no hrIdem) is compared byte for byte, as then: the same bytes are the job, a default written out is not', async () => {
    const l = await fleet();
    const id = idempotentJobId('normal', 'k');
    added(await l.add(id, claude({ maxWaitMs: 5_000 })));
    // What an older producer's add left: the same job hash and data, without the digest.
    await db.redis.hdel(`${l.k.jobKeyPrefix}${id}`, 'hrIdem');
    expect(await l.add(id, claude({ maxWaitMs: 7_000 }))).toMatchObject({ id, existing: true });
    expect(await l.add(id, claude({ maxWaitMs: 5_000 }, { stream: false }))).toMatchObject(conflictNaming(id));
    expect(await l.add(id, claude({}, { max_tokens: 65 }))).toMatchObject(conflictNaming(id));
  });

  it('of a key that coalesced into another job finds that job for a repeat written otherwise, and refuses another request naming it', async () => {
    const l = await fleet();
    const coalesced = { deduplication: { id: 'same-request' } };
    const first = added(await l.add(idempotentJobId('normal', 'a'), claude({ idempotencyKey: 'a', coalesce: true }), coalesced));
    const keyB = idempotentJobId('normal', 'b');
    expect(await l.add(keyB, claude({ idempotencyKey: 'b', coalesce: true }), coalesced)).toMatchObject({ id: first.id, existing: true });
    // The alias holds the job's digest: a repeat that writes `stream: false` is key b's job.
    expect(await l.add(keyB, claude({ idempotencyKey: 'b', coalesce: true }, { stream: false }), coalesced)).toMatchObject({ id: first.id, existing: true });
    expect(await l.add(keyB, claude({ idempotencyKey: 'b', coalesce: true }, { max_tokens: 65 }), coalesced)).toMatchObject(conflictNaming(first.id));
    expect(await db.redis.exists(`${l.k.jobKeyPrefix}${keyB}`)).toBe(0);

    // An alias an older version wrote holds the sha1 of the job's data, compared as it was.
    const job = parseJob(claude({ idempotencyKey: 'b', coalesce: true })).job;
    await db.redis.set(l.k.idempotentAlias(keyB), `${first.id}|${createHash('sha1').update(JSON.stringify(job)).digest('hex')}`);
    expect(await l.add(keyB, claude({ idempotencyKey: 'b', coalesce: true }), coalesced)).toMatchObject({ id: first.id, existing: true });
    expect(await l.add(keyB, claude({ idempotencyKey: 'b', coalesce: true }, { stream: false }), coalesced)).toMatchObject(conflictNaming(first.id));
  });

  it('of a key shed to the batch lane at enqueue finds its BATCH job for a repeat written otherwise', async () => {
    const l = await fleet('low');
    const jobId = idempotentJobId('low', 'k');
    const job: LlmJob = parseJob(claude({ priority: 'LOW', onShed: 'batch' })).job;
    await rememberHandOff(db.redis, l.prefix, 'low', jobId, handOffJobId(jobId), job, 60);
    expect(await db.redis.get(l.k.idempotentAlias(jobId))).toBe(`${handOffJobId(jobId)}|${idempotencyDigestOf(job)}`);
    expect(await l.add(jobId, claude({ priority: 'LOW', onShed: 'batch' }, { stream: false }))).toMatchObject({ id: handOffJobId(jobId), existing: true });
    expect(await l.add(jobId, claude({ priority: 'LOW', onShed: 'batch' }, { max_tokens: 65 }))).toMatchObject(conflictNaming(handOffJobId(jobId)));
  });
});
