import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { Bucket, type AcquireResult, type BucketOptions, type PoolLimits, type Reservation } from './bucket.js';
import { redisForFile } from '@headroom/testing/vitest';
import { createRedis } from './connection.js';
import { ErrorCode, HeadroomError } from './errors.js';
import { SETTLES_PER_CALL } from './internal/carried-work.js';
import { parseRateLimitHeaders } from './rate-limit-headers.js';

const db = redisForFile();



/** Nothing is sent by the timer during a test unless the test asks for it. */
const HOURS = 3_600_000;

function fresh(options: BucketOptions = {}): Bucket {
  return new Bucket(db.redis, { prefix: `c-${randomUUID().slice(0, 8)}`, flushDelayMs: HOURS, ...options });
}

function grantOf(r: AcquireResult): Reservation {
  if (r.status !== 'granted') throw new Error(`expected a grant, got ${JSON.stringify(r)}`);
  return r.reservation;
}

const LIMITS: PoolLimits = { rpm: 50, itpm: 30_000, otpm: 8000 };
const fill = { inputTokens: 100, outputTokens: 8000 };

async function otpmUsed(b: Bucket, pool: string): Promise<number> {
  const snap = await b.snapshot(pool, LIMITS);
  return 8000 - (snap.dimensions.find((d) => d.dimension === 'otpm')?.level ?? 8000);
}

/** Whether `p` is still unsettled once every microtask queued so far has run. */
async function isPending(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending');
  const later = new Promise((r) => setImmediate(() => r(marker)));
  return (await Promise.race([p.then(() => 'done', () => 'done'), later])) === marker;
}

describe('a settle carried by the next acquire', () => {
  it("release gives a grant never sent back whole, its request and its tenant's request too; a settle of no usage keeps the request", async () => {
    const b = fresh();
    // Requests bind: the pool holds 2 (rpm 2, burst 60 s), the tenant 2 (rpm 2).
    const limits: PoolLimits = { rpm: 2, itpm: 30_000, otpm: 8000 };
    const tenant = { id: 'acme', limits: { rpm: 2 } };
    const ask = () => b.acquire({ pool: 'p', limits, lane: 'critical', need: { inputTokens: 10, outputTokens: 10 }, tenant });
    const first = grantOf(await ask());
    const second = grantOf(await ask());
    expect((await ask()).status).toBe('wait');
    // A call the provider refused still counted against its requests: a zero settle keeps it.
    expect(await b.settle(first, { inputTokens: 0, outputTokens: 0 }, { immediate: true })).toMatchObject({
      status: 'settled', delta: { requests: 0, tenantRequests: 0, inputTokens: -10, outputTokens: -10 },
    });
    expect(await ask()).toMatchObject({ status: 'wait', reason: 'rpm' });
    // A grant never sent did not: released, its request serves the next acquire (the pool's and
    // the tenant's, both of which bound), which carries the release.
    const released = b.release(second);
    const third = await ask();
    expect(third.status).toBe('granted');
    expect(await released).toMatchObject({ status: 'settled', delta: { requests: -1, tenantRequests: -1, inputTokens: -10, outputTokens: -10 }, atMs: third.atMs });
    expect((await ask()).status).toBe('wait');
    // The lane's count of grants is of calls let through: three granted, one given back.
    expect((await b.snapshot('p', limits)).counters.grants).toEqual({ critical: 2 });
    // Once per reservation, whichever way it goes back.
    expect((await b.settle(second, { inputTokens: 0, outputTokens: 0 })).status).toBe('duplicate');
    await b.close();
  });

  it('is applied before that acquire checks: the refund it carries makes the grant possible', async () => {
    const b = fresh();
    const first = grantOf(await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: fill }));
    const settled = b.settle(first, { input_tokens: 100, output_tokens: 0 });
    expect(await isPending(settled)).toBe(true);
    // The pool's output tokens are all drawn; only the refund in flight can serve this.
    const second = await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: fill });
    expect(second.status).toBe('granted');
    const s = await settled;
    expect(s).toMatchObject({ status: 'settled', delta: { outputTokens: -8000 } });
    expect(s.atMs).toBe(second.atMs);
    await b.close();
  });

  it('carries headers after the settles, in the same call', async () => {
    const b = fresh();
    const r = grantOf(await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: { inputTokens: 100, outputTokens: 4000 } }));
    const settled = b.settle(r, { input_tokens: 100, output_tokens: 1000 });
    // The provider counts 2000 output tokens left; after the settle the bucket holds 7000.
    const synced = b.sync('p', LIMITS, parseRateLimitHeaders({ 'anthropic-ratelimit-output-tokens-remaining': '2000' }));
    const next = await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: { inputTokens: 0, outputTokens: 3000 } });
    expect(next).toMatchObject({ status: 'wait', reason: 'otpm' });
    expect((await synced).lowered).toEqual(['otpm']);
    expect((await settled).atMs).toBe(next.atMs);
    await b.close();
  });

  it('is sent by itself when no acquire comes within the flush delay', async () => {
    const b = fresh({ flushDelayMs: 5 });
    const r = grantOf(await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: fill }));
    expect(await b.settle(r, { input_tokens: 100, output_tokens: 3000 })).toMatchObject({ status: 'settled', delta: { outputTokens: -5000 } });
    expect(await otpmUsed(b, 'p')).toBeLessThanOrEqual(3000);
  });

  it('is sent on close, after which the bucket refuses work with CLOSED', async () => {
    const b = fresh();
    const r = grantOf(await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: fill }));
    const settled = b.settle(r, { input_tokens: 100, output_tokens: 0 });
    await b.close();
    expect(await isPending(settled)).toBe(false);
    expect((await settled).status).toBe('settled');
    expect(await otpmUsed(b, 'p')).toBeLessThan(8000);
    await expect(b.settle(r, { input_tokens: 0, output_tokens: 0 })).rejects.toSatisfy((e) => e instanceof HeadroomError && e.code === ErrorCode.CLOSED);
  });

  it('is sent at once when asked, with whatever else waits for that pool', async () => {
    const b = fresh();
    const [r1, r2] = [
      grantOf(await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: { inputTokens: 0, outputTokens: 100 } })),
      grantOf(await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: { inputTokens: 0, outputTokens: 100 } })),
    ];
    const waiting = b.settle(r1, { input_tokens: 0, output_tokens: 0 });
    const now = await b.settle(r2, { input_tokens: 0, output_tokens: 0 }, { immediate: true });
    expect(now.status).toBe('settled');
    expect(await isPending(waiting)).toBe(false);
    await b.close();
  });

  it('refunds a reservation once, even when the same settle is handed in twice', async () => {
    const b = fresh();
    const r = grantOf(await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: { inputTokens: 100, outputTokens: 4000 } }));
    const twice = [b.settle(r, { input_tokens: 100, output_tokens: 0 }), b.settle(r, { input_tokens: 100, output_tokens: 0 })];
    await b.flush();
    expect((await Promise.all(twice)).map((s) => s.status)).toEqual(['settled', 'duplicate']);
    // One refund of 4000: the pool holds none of the reservation's output, not minus 4000.
    expect(await otpmUsed(b, 'p')).toBe(0);
    const once = await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: fill });
    expect(once.status).toBe('granted');
    expect(await otpmUsed(b, 'p')).toBeGreaterThan(7990);
  });

  it('is never carried to another pool: each pool keeps its own keys in its own slot', async () => {
    const b = fresh();
    const r = grantOf(await b.acquire({ pool: 'a', limits: LIMITS, lane: 'critical', need: fill }));
    const settled = b.settle(r, { input_tokens: 100, output_tokens: 0 });
    await b.acquire({ pool: 'b', limits: LIMITS, lane: 'critical', need: fill });
    expect(await isPending(settled)).toBe(true);
    expect(await otpmUsed(b, 'a')).toBeGreaterThan(7990);
    await b.flush();
    expect((await settled).status).toBe('settled');
    expect(await otpmUsed(b, 'a')).toBeLessThan(10);
  });

  it('applies more settles than one call carries, the rest by the flush, each once', async () => {
    const b = fresh();
    const small = { inputTokens: 0, outputTokens: 100 };
    const limits = { ...LIMITS, rpm: 1000 };
    const grants = [];
    for (let i = 0; i < SETTLES_PER_CALL + 3; i++) grants.push(grantOf(await b.acquire({ pool: 'p', limits, lane: 'critical', need: small })));
    const settles = grants.map((r) => b.settle(r, { input_tokens: 0, output_tokens: 0 }));
    await b.acquire({ pool: 'p', limits, lane: 'critical', need: small });
    await b.flush();
    const results = await Promise.all(settles);
    expect(results.every((s) => s.status === 'settled' && s.delta.outputTokens === -100)).toBe(true);
    // The last grant, unsettled, holds its 100; the settled ones nothing.
    expect(await otpmUsed(b, 'p')).toBeGreaterThan(90);
    expect(await otpmUsed(b, 'p')).toBeLessThanOrEqual(100);
  });

  it('settles a reservation handed over as plain data, in another bucket', async () => {
    const [a, b] = [fresh(), fresh()];
    const other = new Bucket(db.redis, { prefix: a.prefix, flushDelayMs: HOURS });
    const r = grantOf(await a.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: fill }));
    const copy = JSON.parse(JSON.stringify(r)) as Reservation;
    expect(await other.settle(copy, { input_tokens: 100, output_tokens: 2000 }, { immediate: true })).toMatchObject({ status: 'settled', delta: { outputTokens: -6000 } });
    expect(await otpmUsed(a, 'p')).toBeLessThanOrEqual(2000);
    await Promise.all([a.close(), b.close(), other.close()]);
  });

  it('rejects the settles of a call lost with its connection, and keeps their charge', async () => {
    const conn = createRedis(db.url, 'bucket') as Redis;
    const b = new Bucket(conn, { prefix: `c-${randomUUID().slice(0, 8)}`, flushDelayMs: HOURS });
    const r = grantOf(await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: fill }));
    const id = await conn.client('ID');
    const settled = b.settle(r, { input_tokens: 100, output_tokens: 0 });
    // Redis holds the call unrun (writes paused) while its connection is killed: the call is lost.
    await db.redis.call('CLIENT', 'PAUSE', '10000', 'WRITE');
    const next = b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: { inputTokens: 0, outputTokens: 1 } });
    const outcomes = Promise.all([next, settled].map((p) => p.then(() => undefined, (e: unknown) => e)));
    await until(async () => String(await db.redis.call('CLIENT', 'LIST')).includes('cmd=evalsha'));
    await db.redis.call('CLIENT', 'KILL', 'ID', String(id));
    await db.redis.call('CLIENT', 'UNPAUSE');
    for (const e of await outcomes) expect(e).toSatisfy((x) => x instanceof HeadroomError && x.code === ErrorCode.REDIS_UNAVAILABLE);
    // Not resent after the reconnect: the grant's full charge stays, less only the refill.
    await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: { inputTokens: 0, outputTokens: 0 } });
    const snap = await b.snapshot('p', LIMITS);
    const otpm = snap.dimensions.find((d) => d.dimension === 'otpm');
    expect(otpm?.level).toBeCloseTo(((snap.atMs - r.grantedAtMs) * 8000) / 60_000, 6);
    await b.close();
    conn.disconnect();
  });

  it("rejects a cooldown and a snapshot lost with their connection, rather than leave their callers waiting for good", async () => {
    // A worker awaits the cooldown after a 429 and the snapshot while it waits for a model; the
    // pressure leader awaits the snapshot at each tick. Left pending, the job hung on its worker
    // (its lock renewed, never run, its tenant's count held) and the leader never ticked again.
    const conn = createRedis(db.url, 'bucket') as Redis;
    const b = new Bucket(conn, { prefix: `c-${randomUUID().slice(0, 8)}`, flushDelayMs: HOURS });
    await b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: fill });
    const id = await conn.client('ID');
    await db.redis.call('CLIENT', 'PAUSE', '10000', 'WRITE');
    const calls = [b.cooldown('p', 'm', { durationMs: 1_000 }), b.snapshot('p', LIMITS, { models: ['m'] })];
    const outcomes = Promise.all(calls.map((p) => p.then(() => undefined, (e: unknown) => e)));
    // The cooldown script is not loaded yet: sent as EVAL, not EVALSHA.
    await until(async () => /cmd=eval/.test(String(await db.redis.call('CLIENT', 'LIST'))));
    await db.redis.call('CLIENT', 'KILL', 'ID', String(id));
    await db.redis.call('CLIENT', 'UNPAUSE');
    for (const e of await outcomes) expect(e).toSatisfy((x) => x instanceof HeadroomError && x.code === ErrorCode.REDIS_UNAVAILABLE);
    await b.close();
    conn.disconnect();
  });
});

async function until(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((r) => setTimeout(r, 5));
}
