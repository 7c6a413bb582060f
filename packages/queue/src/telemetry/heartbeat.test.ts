import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { fleetKeys } from '@headroom/queue';
import { Heartbeat, heartbeatOf, readHeartbeats } from './heartbeat.js';
import { redisForFile } from '@headroom/testing/vitest';

const db = redisForFile();


/** Polls `cond` every 20 ms until it holds; fails after 10 s. */
async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) if (await cond()) return;
  throw new Error('condition not met within 10 s');
}

const prefix = () => `hb-${randomUUID().slice(0, 8)}`;

describe('Heartbeat', () => {
  it('publishes in-flight jobs, readable by the dashboard', async () => {
    const p = prefix();
    const now = 1_000_000;
    let inFlight = 3;
    const hb = new Heartbeat({ redis: db.redis, prefix: p, id: 'w1', concurrency: 16, inFlight: () => inFlight, now: () => now });
    await hb.beat();
    let read = await readHeartbeats(db.redis, p);
    expect(read.expired).toEqual([]);
    expect(read.alive).toHaveLength(1);
    expect(read.alive[0]).toMatchObject({
      id: 'w1',
      pid: process.pid,
      inFlight: 3,
      concurrency: 16,
      startedAt: now,
    });
    // Stamped in Redis time, valid for 3 intervals.
    expect(read.alive[0]!.expiresAtMs - read.alive[0]!.atMs).toBe(15_000);
    expect(Math.abs(read.alive[0]!.atMs - read.atMs)).toBeLessThan(5_000);

    inFlight = 0;
    await hb.beat();
    read = await readHeartbeats(db.redis, p);
    expect(read.alive[0]!.inFlight).toBe(0);
  });

  it("keeps gateways apart from workers: each kind in its own hash, read and removed by kind", async () => {
    const p = prefix();
    const worker = new Heartbeat({ redis: db.redis, prefix: p, id: 'w1', concurrency: 8, inFlight: () => 1 });
    const gateway = new Heartbeat({ redis: db.redis, prefix: p, kind: 'gateway', id: 'g1', concurrency: 0, inFlight: () => 5 });
    await Promise.all([worker.beat(), gateway.beat()]);
    expect((await readHeartbeats(db.redis, p)).alive.map((h) => h.id)).toEqual(['w1']);
    expect((await readHeartbeats(db.redis, p, 'gateway')).alive).toMatchObject([{ id: 'g1', inFlight: 5 }]);
    await gateway.stop();
    expect((await readHeartbeats(db.redis, p, 'gateway')).alive).toEqual([]);
    expect((await readHeartbeats(db.redis, p)).alive).toHaveLength(1);
  });

  it("tells one process's beat: alive while its entry lasts, expired after, absent once it stopped cleanly", async () => {
    const p = prefix();
    const live = new Heartbeat({ redis: db.redis, prefix: p, id: 'live', concurrency: 1, inFlight: () => 1 });
    // A beat that vouches for 1 ms: expired by the time it is read.
    const lapsed = new Heartbeat({ redis: db.redis, prefix: p, id: 'lapsed', concurrency: 1, inFlight: () => 1, ttlMs: 1 });
    await Promise.all([live.beat(), lapsed.beat()]);
    await new Promise((r) => setTimeout(r, 5));
    expect((await heartbeatOf(db.redis, p, 'live')).state).toBe('alive');
    expect((await heartbeatOf(db.redis, p, 'lapsed')).state).toBe('expired');
    expect((await heartbeatOf(db.redis, p, 'never-beat')).state).toBe('absent');
    await live.stop();
    expect((await heartbeatOf(db.redis, p, 'live')).state).toBe('absent');
  });

  it("carries a worker's relaying jobs as of each beat, and none for a process that does not say", async () => {
    const p = prefix();
    let relaying = ['high.a', 'high.b'];
    const worker = new Heartbeat({ redis: db.redis, prefix: p, id: 'w', concurrency: 2, inFlight: () => relaying.length, relaying: () => relaying });
    const gateway = new Heartbeat({ redis: db.redis, prefix: p, kind: 'gateway', id: 'g', concurrency: 0, inFlight: () => 1 });
    await Promise.all([worker.beat(), gateway.beat()]);
    expect(await heartbeatOf(db.redis, p, 'w')).toMatchObject({ state: 'alive', entry: { id: 'w', relaying: ['high.a', 'high.b'] } });
    relaying = ['high.b'];
    await worker.beat();
    expect((await heartbeatOf(db.redis, p, 'w')).entry?.relaying).toEqual(['high.b']);
    const beat = await heartbeatOf(db.redis, p, 'g', 'gateway');
    expect(beat.state).toBe('alive');
    expect(beat.entry && 'relaying' in beat.entry).toBe(false);
    expect(await heartbeatOf(db.redis, p, 'never-beat')).toEqual({ state: 'absent' });
  });

  it('reports an entry past its expiry as expired, and a clean stop removes the entry', async () => {
    const p = prefix();
    const key = fleetKeys(p).workers;
    const past = { id: 'gone', host: 'h', pid: 1, atMs: 1, expiresAtMs: 2, startedAt: 0, inFlight: 0, concurrency: 1, breakers: [] };
    await db.redis.hset(key, 'gone', JSON.stringify(past), 'garbage', 'not json');
    // A live entry an older worker wrote, with its per-process breakers: read without them.
    const older = { id: 'older', host: 'h', pid: 2, atMs: 1, expiresAtMs: Number.MAX_SAFE_INTEGER, startedAt: 0, inFlight: 1, concurrency: 1, breakers: [{ model: 'm', state: 'open', consecutiveFailures: 5 }] };
    await db.redis.hset(key, 'older', JSON.stringify(older));
    const hb = new Heartbeat({ redis: db.redis, prefix: p, id: 'w2', concurrency: 1, inFlight: () => 0 });
    await hb.beat();
    const read = await readHeartbeats(db.redis, p);
    expect(read.alive.map((w) => w.id)).toEqual(['older', 'w2']);
    expect(read.alive[0]).not.toHaveProperty('breakers');
    expect(read.expired).toEqual(['garbage', 'gone']);
    await hb.stop();
    expect(await db.redis.hexists(key, 'w2')).toBe(0);
  });

  it('is not written from a lost connection until it beats again, which it does at once once the connection is back', async () => {
    // Redis restarted without its data: this process's entry is gone until it beats again. A
    // gateway that went on naming itself on jobs meanwhile had them withdrawn as a gateway gone.
    const p = prefix();
    const conn = new Redis(db.url, { maxRetriesPerRequest: null });
    const hb = new Heartbeat({ redis: conn, prefix: p, kind: 'gateway', id: 'g', concurrency: 0, inFlight: () => 0, intervalMs: 3_600_000 });
    try {
      hb.start();
      await until(() => hb.written);
      const writtenAtClose: boolean[] = [];
      conn.once('close', () => writtenAtClose.push(hb.written));
      // As a restart empties Redis and drops its clients.
      await db.redis.del(fleetKeys(p).gateways);
      await db.redis.call('CLIENT', 'KILL', 'ID', String(await conn.client('ID')));
      await until(async () => (await heartbeatOf(db.redis, p, 'g', 'gateway')).state === 'alive');
      expect(writtenAtClose).toEqual([false]);
      expect(hb.written).toBe(true);
    } finally {
      await hb.stop();
      conn.disconnect();
    }
  });

  it('prunes entries dead for over an hour on every 12th beat', async () => {
    const p = prefix();
    const key = fleetKeys(p).workers;
    const [sec] = (await db.redis.time()).map(Number) as [number, number];
    const deadLongAgo = { id: 'old', host: 'h', pid: 1, atMs: 0, expiresAtMs: sec * 1000 - 3 * 3600_000, startedAt: 0, inFlight: 0, concurrency: 1, breakers: [] };
    const deadRecently = { ...deadLongAgo, id: 'recent', expiresAtMs: sec * 1000 - 60_000 };
    await db.redis.hset(key, 'old', JSON.stringify(deadLongAgo), 'recent', JSON.stringify(deadRecently));
    const hb = new Heartbeat({ redis: db.redis, prefix: p, id: 'w3', concurrency: 1, inFlight: () => 0 });
    for (let i = 0; i < 11; i++) await hb.beat();
    expect(await db.redis.hexists(key, 'old')).toBe(1);
    await hb.beat();
    expect((await db.redis.hkeys(key)).sort()).toEqual(['recent', 'w3']);
  });
});
