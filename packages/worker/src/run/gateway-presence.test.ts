/**
 * The worker's answer to "is the gateway waiting on this job still there?", from the real
 * heartbeats in a real Redis, with this worker's clock injected: which reads it makes (one serves
 * every job while fresh), and when it says gone (only on a read begun after the job was taken: at
 * once for an entry past its expiry, only after a beat's lifetime for one absent).
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fleetKeys, Heartbeat, readHeartbeats, type Heartbeats } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { GatewayPresence, PRESENCE_FRESH_MS } from './gateway-presence.js';

const db = redisForFile();

/** How long a beat vouches for a gateway the presence has not seen beat (the config's 3 x `gateway.heartbeatMs`). */
const LIFETIME_MS = 15_000;

/** A presence on a prefix of its own, its clock moved by the test, counting its reads of Redis. */
function presence(read?: (prefix: string) => Promise<Heartbeats>) {
  const prefix = `presence-${randomUUID().slice(0, 8)}`;
  let t = 1_000_000;
  let reads = 0;
  const gateways = new GatewayPresence(
    () => {
      reads++;
      return read ? read(prefix) : readHeartbeats(db.redis, prefix, 'gateway');
    },
    () => t,
    LIFETIME_MS,
  );
  const gateway = (id: string) => new Heartbeat({ redis: db.redis, prefix, kind: 'gateway', id, concurrency: 0, inFlight: () => 0 });
  return {
    prefix,
    gateways,
    gateway,
    reads: () => reads,
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

describe('GatewayPresence', () => {
  it('answers alive for every job from one read while that read is fresh: no round trip per job', async () => {
    const p = presence();
    await p.gateway('gateway-a').beat();
    const takenAt = p.now();
    for (let i = 0; i < 50; i++) expect(await p.gateways.gone('gateway-a', takenAt)).toBe(false);
    expect(p.reads()).toBe(1);
    // Past its freshness, the next job's question reads again, once.
    p.advance(PRESENCE_FRESH_MS + 1);
    expect(await Promise.all([p.gateways.gone('gateway-a', takenAt), p.gateways.gone('gateway-a', takenAt)])).toEqual([false, false]);
    expect(p.reads()).toBe(2);
  });

  it('says gone at once when the last beat lapsed: the entry is there, past its expiry', async () => {
    const p = presence();
    // An entry whose expiry (Redis time) has passed: the gateway stopped beating long ago.
    await db.redis.hset(fleetKeys(p.prefix).gateways, 'gateway-old', JSON.stringify({ id: 'gateway-old', host: 'h', pid: 1, atMs: 1, expiresAtMs: 2, startedAt: 0, inFlight: 0, concurrency: 0 }));
    expect(await p.gateways.gone('gateway-old', p.now())).toBe(true);
    // One read, begun after the job was taken, decided it.
    expect(p.reads()).toBe(1);
  });

  it('takes an entry gone missing (FLUSHALL, the gateway still beating) for gone only once absent longer than its beat vouched for', async () => {
    const p = presence();
    // A gateway whose beats vouch for 20 s each, seen by this worker.
    const a = new Heartbeat({ redis: db.redis, prefix: p.prefix, kind: 'gateway', id: 'gateway-a', concurrency: 0, inFlight: () => 0, ttlMs: 20_000 });
    await a.beat();
    expect(await p.gateways.gone('gateway-a', p.now())).toBe(false);
    // Redis loses the hash; the gateway's connection stays open, so it beats again only at its interval.
    await db.redis.del(fleetKeys(p.prefix).gateways);
    p.advance(PRESENCE_FRESH_MS + 1);
    expect(await p.gateways.gone('gateway-a', p.now())).toBe(false);
    // Past the config's lifetime, not the one its beats carry: not yet.
    p.advance(LIFETIME_MS);
    expect(await p.gateways.gone('gateway-a', p.now())).toBe(false);
    // It beats again: alive, and its absence forgotten.
    await a.beat();
    p.advance(PRESENCE_FRESH_MS + 1);
    expect(await p.gateways.gone('gateway-a', p.now())).toBe(false);
    // Gone missing again (a clean stop removes it), and absent for longer than 20 s: gone.
    await a.stop();
    p.advance(PRESENCE_FRESH_MS + 1);
    expect(await p.gateways.gone('gateway-a', p.now())).toBe(false);
    p.advance(20_001);
    expect(await p.gateways.gone('gateway-a', p.now())).toBe(true);
  });

  it('times the absence of a gateway it never saw beat by the config: 3 x `gateway.heartbeatMs`', async () => {
    const p = presence();
    expect(await p.gateways.gone('gateway-unseen', p.now())).toBe(false);
    p.advance(LIFETIME_MS);
    expect(await p.gateways.gone('gateway-unseen', p.now())).toBe(false);
    p.advance(PRESENCE_FRESH_MS + 1);
    expect(await p.gateways.gone('gateway-unseen', p.now())).toBe(true);
  });

  it('never says gone from a read older than the job: a gateway started since is read again, and found', async () => {
    const p = presence();
    await p.gateway('gateway-a').beat();
    expect(await p.gateways.gone('gateway-a', p.now())).toBe(false);
    // A gateway that started after that read, and a job of it taken after.
    await p.gateway('gateway-new').beat();
    p.advance(1);
    expect(await p.gateways.gone('gateway-new', p.now())).toBe(false);
    expect(p.reads()).toBe(2);
  });

  it("keeps a late gateway alive: an entry this worker's clock says has lapsed since its read is read again, and a beat since counts", async () => {
    const p = presence();
    // Beats that vouch for 500 ms: within one fresh read's span, the clock can pass one's expiry.
    const a = new Heartbeat({ redis: db.redis, prefix: p.prefix, kind: 'gateway', id: 'gateway-a', concurrency: 0, inFlight: () => 0, ttlMs: 500 });
    await a.beat();
    const takenAt = p.now();
    expect(await p.gateways.gone('gateway-a', takenAt)).toBe(false);
    // Late, but alive: it beat again before the read that decides.
    await a.beat();
    p.advance(600);
    expect(await p.gateways.gone('gateway-a', takenAt)).toBe(false);
    expect(p.reads()).toBe(2);
  });

  it('never withdraws on a doubt: a read Redis does not answer says not gone', async () => {
    const p = presence(() => Promise.reject(new Error('Connection is closed.')));
    expect(await p.gateways.gone('gateway-a', p.now())).toBe(false);
  });
});
