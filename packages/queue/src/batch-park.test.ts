import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisForFile } from '@headroom/testing/vitest';
import { addToLane, publishFleetSettings, type Added } from './admission.js';
import { parkBatchJobs } from './batch-park.js';
import { parseConfig } from './config.js';
import type { LlmJob } from './job.js';
import { cancelIfNotStarted } from './lane-cancel.js';
import { laneHandle } from './lane-handle.test-support.js';

const db = redisForFile();
const closers: { close(): Promise<unknown> }[] = [];
/** BullMQ's worker wants a connection that never gives a command up. */
let bull: Redis;
beforeAll(() => {
  bull = new Redis(db.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
  bull.disconnect();
});

const MODEL = 'claude-haiku-4-5';
const job = (i: number): LlmJob =>
  ({ priority: 'LOW', sla: 'none', provider: 'anthropic', tenant: 'acme', request: { model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: `job ${i}` }] } }) as LlmJob;

/** A BATCH lane with `n` admitted jobs taken under one claim token and filed, as the leader leaves them. */
async function filed(n: number) {
  const prefix = `p${randomUUID().slice(0, 8)}`;
  await publishFleetSettings(db.redis, parseConfig({ redis: { prefix }, models: { [MODEL]: { provider: 'anthropic' } } }));
  const lane = laneHandle(bull, prefix, 'batch', closers);
  const added = await addToLane(db.redis, lane.queue, prefix, 'batch', Array.from({ length: n }, (_, i) => ({ jobId: `batch.${randomUUID()}`, job: job(i), opts: {} })));
  const ids = added.map((a) => (a as Added).id);
  const token = 'hrb-1-leader';
  for (let i = 0; i < n; i++) await lane.take(); // each under its own token: re-lock them under the claim's
  for (const id of ids) await db.redis.set(`${lane.k.jobKeyPrefix}${id}:lock`, token, 'PX', 60_000);
  expect(await parkBatchJobs(db.redis, prefix, ids, token, 60_000, { sending: false })).toEqual([]);
  return { prefix, lane, ids, token };
}

describe('parkBatchJobs and a cancel, whichever comes first', () => {
  it('a cancel before the leader marks the batch sent removes the job, and the mark then reports it lost (not sent)', async () => {
    const { prefix, lane, ids, token } = await filed(2);
    expect(await cancelIfNotStarted(db.redis, prefix, ids[0]!)).toBe('removed');
    expect(await parkBatchJobs(db.redis, prefix, ids, token, 60_000, { sending: true })).toEqual([ids[0]]);
    expect(await db.redis.hget(lane.k.usage, 'tenant:acme')).toBe('1');
    expect(await lane.queue.getActiveCount()).toBe(1);
  });

  it('a cancel after the mark is refused: the job is left to its batch, still locked and counted', async () => {
    const { prefix, lane, ids, token } = await filed(2);
    expect(await parkBatchJobs(db.redis, prefix, ids, token, 60_000, { sending: true })).toEqual([]);
    expect(await cancelIfNotStarted(db.redis, prefix, ids[0]!)).toBe('started');
    expect(await db.redis.get(`${lane.k.jobKeyPrefix}${ids[0]}:lock`)).toBe(token);
    expect(await db.redis.hget(lane.k.usage, 'tenant:acme')).toBe('2');
    // Back in a claim after its batch said nothing of it (filed again, not sent): cancellable again.
    expect(await parkBatchJobs(db.redis, prefix, [ids[1]!], token, 60_000, { sending: false })).toEqual([]);
    expect(await cancelIfNotStarted(db.redis, prefix, ids[1]!)).toBe('removed');
  });
});
