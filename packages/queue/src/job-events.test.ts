import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedRedis, startEmbeddedRedis } from '@headroom/testing';
import { FailureCode, jobFailure } from './failure.js';
import { checkRelay, decodeJobEvent, readRelayAfter, encodeJobEvent, flagCancelled, jobEventsKey, relayEvents, type JobEvent } from './job-events.js';
import { fleetKeys, laneKeys } from './keys.js';

let server: EmbeddedRedis;
let redis: Redis;

beforeAll(async () => {
  server = await startEmbeddedRedis();
  redis = new Redis(server.url);
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

const fresh = () => ({ prefix: `ev${randomUUID().slice(0, 6)}`, jobId: `high.${randomUUID()}` });

async function read(prefix: string, jobId: string): Promise<JobEvent[]> {
  const entries = await redis.xrange(jobEventsKey(prefix, jobId), '-', '+');
  return entries.map(([, fields]) => decodeJobEvent(fields[0]!, fields[1]!)!);
}

describe('job events', () => {
  it('round-trips every kind of entry', () => {
    const events: JobEvent[] = [
      { kind: 'start', model: 'claude-haiku-4-5', waitMs: 3, startedAt: 1_700_000_000_000 },
      { kind: 'start', model: 'claude-haiku-4-5', waitMs: 3, startedAt: 1_700_000_000_000, providerRequestId: 'req_1', worker: 'worker-a' },
      { kind: 'event', data: '{"type":"ping"}' },
      { kind: 'error', data: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', failure: jobFailure(FailureCode.STREAM_FAILED, '529 overloaded_error: Overloaded', undefined, 529) },
      { kind: 'end' },
      { kind: 'end', withheld: '{"usage":{"prompt_tokens":3,"completion_tokens":1}}' },
    ];
    expect(events.map((e) => decodeJobEvent(...encodeJobEvent(e)))).toEqual(events);
    expect(decodeJobEvent('zz', 'future entry')).toBeUndefined();
  });

  it('reads a relay back from the start or after an entry, each entry with its id and when Redis appended it', async () => {
    const { prefix, jobId } = fresh();
    expect(await readRelayAfter(redis, prefix, jobId, '0-0', 10)).toEqual([]);
    const events: JobEvent[] = [{ kind: 'start', model: 'm', waitMs: 1, startedAt: 2 }, { kind: 'event', data: '{"n":1}' }, { kind: 'end', withheld: '{"usage":{}}' }];
    expect(await relayEvents(redis, prefix, jobId, events, { first: true })).toBe('written');
    const read = await readRelayAfter(redis, prefix, jobId, '0-0', 10);
    expect(read.map((e) => e.event)).toEqual(events);
    const ids = (await redis.xrange(jobEventsKey(prefix, jobId), '-', '+')).map(([id]) => id);
    expect(read.map((e) => e.id)).toEqual(ids);
    expect(read.map((e) => e.atMs)).toEqual(ids.map((id) => Number(id.split('-')[0])));
    expect((await readRelayAfter(redis, prefix, jobId, ids[0]!, 10)).map((e) => e.event)).toEqual(events.slice(1));
  });

  it("refuses a later write once the stream has ended, with its end or an error: the job was ended without that attempt", async () => {
    for (const last of [{ kind: 'end' }, { kind: 'error', data: '{}', failure: jobFailure(FailureCode.STREAM_FAILED, 'cut') }] as const) {
      const { prefix, jobId } = fresh();
      await relayEvents(redis, prefix, jobId, [{ kind: 'start', model: 'm', waitMs: 0, startedAt: 1 }, { kind: 'event', data: '{"n":1}' }], { first: true });
      expect(await relayEvents(redis, prefix, jobId, [last], { first: false })).toBe('written');
      expect(await relayEvents(redis, prefix, jobId, [{ kind: 'event', data: '{"n":2}' }], { first: false })).toBe('closed');
      expect((await read(prefix, jobId)).map((e) => e.kind)).toEqual(['start', 'event', last.kind]);
    }
  });

  it('appends in order, in the lane slot, and expires the stream after its last write', async () => {
    const { prefix, jobId } = fresh();
    expect(jobEventsKey(prefix, jobId)).toBe(laneKeys(prefix, 'high').jobEvents(jobId));
    expect(await relayEvents(redis, prefix, jobId, [{ kind: 'start', model: 'm', waitMs: 1, startedAt: 2 }, { kind: 'event', data: '{"n":1}' }], { first: true, ttlMs: 60_000 })).toBe('written');
    expect(await relayEvents(redis, prefix, jobId, [{ kind: 'event', data: '{"n":2}' }, { kind: 'end' }], { first: false, ttlMs: 60_000 })).toBe('written');
    expect((await read(prefix, jobId)).map((e) => e.kind)).toEqual(['start', 'event', 'event', 'end']);
    const ttl = await redis.pttl(jobEventsKey(prefix, jobId));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it("refuses an attempt's first write when an earlier attempt already streamed part of an answer", async () => {
    const { prefix, jobId } = fresh();
    await relayEvents(redis, prefix, jobId, [{ kind: 'event', data: '{"n":1}' }], { first: true });
    expect(await relayEvents(redis, prefix, jobId, [{ kind: 'event', data: '{"again":1}' }], { first: true })).toBe('taken');
    expect(await read(prefix, jobId)).toEqual([{ kind: 'event', data: '{"n":1}' }]);
  });

  it('refuses a later write once the stream is gone (Redis lost it), never recreating it past the reader', async () => {
    const { prefix, jobId } = fresh();
    await relayEvents(redis, prefix, jobId, [{ kind: 'start', model: 'm', waitMs: 0, startedAt: 1 }, { kind: 'event', data: '{"n":1}' }], { first: true });
    await redis.del(jobEventsKey(prefix, jobId));
    expect(await relayEvents(redis, prefix, jobId, [{ kind: 'event', data: '{"n":2}' }, { kind: 'end' }], { first: false })).toBe('lost');
    expect(await redis.exists(jobEventsKey(prefix, jobId))).toBe(0);
  });

  it("checks before a provider call, writing nothing, what an attempt's first write would meet: open, taken or cancelled", async () => {
    const { prefix, jobId } = fresh();
    expect(await checkRelay(redis, prefix, jobId)).toBe('open');
    expect(await redis.exists(jobEventsKey(prefix, jobId))).toBe(0);
    await relayEvents(redis, prefix, jobId, [{ kind: 'start', model: 'm', waitMs: 0, startedAt: 1 }], { first: true });
    expect(await checkRelay(redis, prefix, jobId)).toBe('taken');
    expect(await read(prefix, jobId)).toHaveLength(1);
    await flagCancelled(redis, prefix, jobId);
    expect(await checkRelay(redis, prefix, jobId)).toBe('cancelled');
  });

  it('refuses every write once the caller cancelled, and tells the fleet on its cancel channel', async () => {
    const { prefix, jobId } = fresh();
    const sub = new Redis(server.url);
    const heard = new Promise<string>((resolve) => sub.on('message', (_channel, message: string) => resolve(message)));
    await sub.subscribe(fleetKeys(prefix).cancelChannel);
    await relayEvents(redis, prefix, jobId, [{ kind: 'event', data: '{"n":1}' }], { first: true });
    await flagCancelled(redis, prefix, jobId);
    await expect(heard).resolves.toBe(jobId);
    expect(await relayEvents(redis, prefix, jobId, [{ kind: 'event', data: '{"n":2}' }], { first: false })).toBe('cancelled');
    expect(await read(prefix, jobId)).toHaveLength(1);
    sub.disconnect();
  });
});
