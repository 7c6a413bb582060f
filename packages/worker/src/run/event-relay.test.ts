/**
 * The relay's writes, against a real Redis: what the SDK hands on in one tick goes in one write
 * (the first token excepted, which goes at once), what arrives during a write goes in the next,
 * and a refusal stops it.
 */
import { describe, expect, it } from 'vitest';
import { decodeJobEvent, flagCancelled, jobEventsKey, newJobId, type JobEvent } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { EventRelay, type RelayRefusal } from './event-relay.js';

const db = redisForFile();
const PREFIX = 'relaytest';

/** Script calls Redis has run so far (the relay's writes are script calls). */
async function scriptCalls(): Promise<number> {
  const stats = await db.redis.info('commandstats');
  return [...stats.matchAll(/cmdstat_(?:evalsha|eval):calls=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
}

async function entries(jobId: string): Promise<JobEvent[]> {
  const read = await db.redis.xrange(jobEventsKey(PREFIX, jobId), '-', '+');
  return read.map(([, fields]) => decodeJobEvent(fields[0]!, fields[1]!)!);
}

const start: JobEvent = { kind: 'start', model: 'm', waitMs: 1, startedAt: 1 };
const event = (n: number): JobEvent => ({ kind: 'event', data: `{"n":${n}}` });

/** A relay for a new job, and the script calls so far (the relay script loaded already: a first call's EVAL would count too). */
async function counted(): Promise<{ jobId: string; relay: EventRelay; before: number }> {
  const warm = new EventRelay(db.redis, PREFIX, newJobId('high'), () => {});
  warm.push(start);
  await warm.flush();
  const jobId = newJobId('high');
  return { jobId, relay: new EventRelay(db.redis, PREFIX, jobId, () => {}), before: await scriptCalls() };
}

describe('EventRelay', () => {
  it('writes the events handed on in one tick in one call, and those that come during it in the next', async () => {
    const { jobId, relay, before } = await counted();
    // A provider's first network read: the start, message_start and the first deltas, parsed
    // and handed on by the SDK in microtasks of one tick.
    relay.push(start);
    await Promise.resolve();
    relay.push(event(1));
    await Promise.resolve();
    relay.push(event(2));
    expect(relay.started).toBe(false);
    await new Promise((r) => setImmediate(r));
    // The write is in flight: these go together after it.
    relay.push(event(3));
    relay.push(event(4));
    expect(await relay.flush()).toBeUndefined();
    expect(relay.started).toBe(true);
    expect(await scriptCalls()).toBe(before + 2);
    expect(await entries(jobId)).toEqual([start, event(1), event(2), event(3), event(4)]);
  });

  it('sends the first token at once, with the events before it, and the rest of its tick after it', async () => {
    const { jobId, relay, before } = await counted();
    // message_start and content_block_start open the message; the first delta is the first token.
    relay.push(start);
    relay.push(event(1));
    await Promise.resolve();
    relay.push(event(2), { now: true });
    await Promise.resolve();
    // Its write began within the same tick (without `now` it waits for the tick's end: above).
    expect(relay.started).toBe(true);
    // The rest of a fast provider's read follows in the next write.
    relay.push(event(3));
    relay.push(event(4));
    expect(await relay.flush()).toBeUndefined();
    expect(await scriptCalls()).toBe(before + 2);
    expect(await entries(jobId)).toEqual([start, event(1), event(2), event(3), event(4)]);
  });

  it('puts every event in the stream, in order', async () => {
    const jobId = newJobId('high');
    const relay = new EventRelay(db.redis, PREFIX, jobId, () => {});
    relay.push(start);
    for (let n = 1; n <= 5; n++) {
      relay.push(event(n));
      if (n % 2 === 0) await new Promise((r) => setImmediate(r));
    }
    relay.push({ kind: 'end' });
    expect(await relay.flush()).toBeUndefined();
    expect(await entries(jobId)).toEqual([start, event(1), event(2), event(3), event(4), event(5), { kind: 'end' }]);
  });

  it('stops at a stream Redis lost after its first write: says so, and never writes it anew', async () => {
    const jobId = newJobId('high');
    const refusals: RelayRefusal[] = [];
    const relay = new EventRelay(db.redis, PREFIX, jobId, (why) => refusals.push(why));
    relay.push(start);
    relay.push(event(1));
    expect(await relay.flush()).toBeUndefined();
    await db.redis.del(jobEventsKey(PREFIX, jobId));
    relay.push(event(2));
    expect(await relay.flush()).toBe('lost');
    expect(refusals).toEqual(['lost']);
    expect(await db.redis.exists(jobEventsKey(PREFIX, jobId))).toBe(0);
  });

  it('stops at a cancelled job: says so once, and drops what was pending', async () => {
    const jobId = newJobId('high');
    const refusals: RelayRefusal[] = [];
    const relay = new EventRelay(db.redis, PREFIX, jobId, (why) => refusals.push(why));
    relay.push(start);
    expect(await relay.flush()).toBeUndefined();
    await flagCancelled(db.redis, PREFIX, jobId);
    relay.push(event(1));
    expect(await relay.flush()).toBe('cancelled');
    relay.push(event(2));
    expect(await relay.flush()).toBe('cancelled');
    expect(refusals).toEqual(['cancelled']);
    expect(await entries(jobId)).toEqual([start]);
  });
});
