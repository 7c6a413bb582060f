/**
 * What the calls in flight may still give back (lua/includes/in-flight.lua): a tokens/min wait
 * names the part of it their refunds cannot cover (`sureWaitMs`), and the count of them returns
 * to nothing whatever way their grants end.
 */
import { randomUUID } from 'node:crypto';
import { redisForFile } from '@headroom/testing/vitest';
import { describe, expect, it } from 'vitest';
import { Bucket, type AcquireResult, type Reservation } from './bucket.js';

const db = redisForFile();

const fresh = () => new Bucket(db.redis, { prefix: `t-${randomUUID().slice(0, 8)}`, flushDelayMs: 0 });
const need = (inputTokens: number, outputTokens: number) => ({ inputTokens, outputTokens, requests: 1 });

function granted(r: AcquireResult): Reservation {
  if (r.status !== 'granted') throw new Error(`expected a grant, got ${JSON.stringify(r)}`);
  return r.reservation;
}

function waited(r: AcquireResult): Extract<AcquireResult, { status: 'wait' }> {
  if (r.status !== 'wait') throw new Error(`expected a wait, got ${JSON.stringify(r)}`);
  return r;
}

const OTPM = { otpm: 6000 };

describe('sure waits', () => {
  it('names a pool output wait the calls in flight could refund as not sure (0)', async () => {
    const b = fresh();
    granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 3000) }));
    // 3,000 short for 4,000 of output: 30 s at 6,000/min, which the 3,000 in flight could cover.
    const w = waited(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 4000) }));
    expect(w.reason).toBe('otpm');
    expect(w.waitMs).toBeGreaterThan(0);
    expect(w.sureWaitMs).toBe(0);
  });

  it('names a wait sure, whole, when nothing is in flight to give tokens back', async () => {
    const b = fresh();
    const r = granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 3000) }));
    // Settled for all it reserved: spent, and nothing more to come.
    await b.settle(r, { input_tokens: 0, output_tokens: 3000 }, { immediate: true });
    const w = waited(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 4000) }));
    expect(w.waitMs).toBeGreaterThan(0);
    expect(w.sureWaitMs).toBe(w.waitMs);
  });

  it('names sure the part of a wait beyond what the calls in flight reserved', async () => {
    const b = fresh();
    const spent = granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 3000) }));
    await b.settle(spent, { input_tokens: 0, output_tokens: 3000 }, { immediate: true });
    granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 1000) }));
    // 2,000 short (20 s); the 1,000 in flight may give back 10 s of it at most.
    const w = waited(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 4000) }));
    expect(w.sureWaitMs).toBeGreaterThan(0);
    expect(w.waitMs - w.sureWaitMs).toBeGreaterThanOrEqual(9_999);
    expect(w.waitMs - w.sureWaitMs).toBeLessThanOrEqual(10_001);
  });

  it("counts for a tenant's wait only its own calls in flight", async () => {
    const b = fresh();
    const limits = { tpm: 1_000_000 };
    const acme = { id: 'acme', limits: { tpm: 2000 } };
    const other = { id: 'other', limits: { tpm: 2000 } };
    granted(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(100, 1500), tenant: acme }));
    const covered = waited(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(100, 1500), tenant: acme }));
    expect(covered).toMatchObject({ reason: 'tenant_tpm', sureWaitMs: 0 });
    // Another tenant spent its own quota and has nothing in flight: acme's 1,500 are not its.
    const spent = granted(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(100, 1500), tenant: other }));
    await b.settle(spent, { input_tokens: 100, output_tokens: 1500 }, { immediate: true });
    const sure = waited(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(100, 1500), tenant: other }));
    expect(sure.reason).toBe('tenant_tpm');
    expect(sure.sureWaitMs).toBe(sure.waitMs);
  });

  it('keeps requests/min waits and cooldowns sure, whatever is in flight', async () => {
    const b = fresh();
    const limits = { rpm: 1, otpm: 6000 };
    granted(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(0, 3000) }));
    const rpm = waited(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(0, 10) }));
    expect(rpm.reason).toBe('rpm');
    expect(rpm.sureWaitMs).toBe(rpm.waitMs);
    await b.cooldown('q', 'm', { durationMs: 30_000 });
    granted(await b.acquire({ pool: 'q', limits: OTPM, lane: 'critical', need: need(0, 3000) }));
    const cooling = waited(await b.acquire({ pool: 'q', limits: OTPM, lane: 'critical', need: need(0, 10), model: 'm' }));
    expect(cooling.reason).toBe('cooldown');
    expect(cooling.sureWaitMs).toBe(cooling.waitMs);
  });

  it("stops counting a grant nobody settles once its call's life is over (its worker died mid-call)", async () => {
    const b = fresh();
    granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 3000), callLifeMs: 30 }));
    await new Promise((r) => setTimeout(r, 60));
    const w = waited(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 4000) }));
    expect(w.sureWaitMs).toBe(w.waitMs);
    expect((await b.snapshot('p', OTPM)).inFlight).toEqual({ calls: 0, outputTokens: 0, tenants: {} });
  });
});

describe('the count of calls in flight', () => {
  it('returns to nothing after a burst of grants settled, released, kept whole, settled twice and cancelled', async () => {
    const b = fresh();
    const limits = { otpm: 1_000_000, tpm: 1_000_000 };
    const tenants = [{ id: 'acme', limits: { tpm: 100_000 } }, { id: 'beta', limits: { tpm: 100_000 } }];
    // Well past half the pool's output taken first, so every grant of the burst is counted
    // (acquire.lua): exactly half let a slow machine's refill (16.7 tokens/ms) bring the level
    // back under half before the burst's first grant, which then went uncounted.
    const half = granted(await b.acquire({ pool: 'p', limits, lane: 'high', need: need(0, 700_000) }));
    const grants = await Promise.all(
      Array.from({ length: 40 }, (_, i) => b.acquire({ pool: 'p', limits, lane: 'high', need: need(10, 100 + i), ...(i % 3 === 0 ? {} : { tenant: tenants[i % 2]! }) })),
    );
    const rs = [half, ...grants.map(granted)];
    const during = (await b.snapshot('p', limits)).inFlight;
    expect(during.calls).toBe(41);
    expect(during.outputTokens).toBe(rs.reduce((n, r) => n + r.need.outputTokens, 0));
    expect(Object.keys(during.tenants).sort()).toEqual(['acme', 'beta']);
    // Released (never sent, or cancelled), settled for more, kept whole (a 5xx), settled for
    // less; some handed in twice.
    const end = [(r: Reservation) => b.release(r), (r: Reservation) => b.settle(r, { input_tokens: 10, output_tokens: 500 }), (r: Reservation) => b.keep(r), (r: Reservation) => b.settle(r, { input_tokens: 10, output_tokens: 3 })];
    await Promise.all(rs.map((r, i) => end[i % 4]!(r)));
    await Promise.all(rs.slice(0, 10).map((r) => b.settle(r, { input_tokens: 10, output_tokens: 1 })));
    await b.flush();
    expect((await b.snapshot('p', limits)).inFlight).toEqual({ calls: 0, outputTokens: 0, tenants: {} });
  });

  it('keeps the whole charge of a grant kept, and ends its place in flight', async () => {
    const b = fresh();
    const r = granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 3000) }));
    expect(await b.keep(r, { immediate: true })).toMatchObject({ status: 'settled', delta: { outputTokens: 0, requests: 0 } });
    const snap = await b.snapshot('p', OTPM);
    expect(snap.inFlight.calls).toBe(0);
    const otpm = snap.dimensions.find((d) => d.dimension === 'otpm')!;
    expect(otpm.level).toBeCloseTo(3000 + ((snap.atMs - r.grantedAtMs) * 6000) / 60_000, 6);
  });

  it('counts a grant only once a tokens/min dimension it draws on is half used: below that no wait is near, and the entry is what a grant paid for it', async () => {
    const b = fresh();
    // 2,999 of 6,000: under half, nothing recorded (no key at all).
    const low = granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 2999) }));
    expect(await db.redis.exists(b.keys('p').inFlight)).toBe(0);
    expect(low.inFlight).toBeUndefined();
    // This one takes the pool past half: counted, and its reservation says so (its settle takes it out).
    expect(granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 1000) })).inFlight).toBe(true);
    expect((await b.snapshot('p', OTPM)).inFlight).toEqual({ calls: 1, outputTokens: 1000, tenants: {} });
    // A tenant near its own quota is counted with the pool's levels low.
    const tenant = { id: 'acme', limits: { tpm: 2000 } };
    granted(await b.acquire({ pool: 'q', limits: { otpm: 1_000_000 }, lane: 'critical', need: need(100, 900), tenant }));
    expect((await b.snapshot('q', { otpm: 1_000_000 })).inFlight).toEqual({ calls: 1, outputTokens: 900, tenants: { acme: 900 } });
    await b.settle(low, { input_tokens: 0, output_tokens: 10 }, { immediate: true });
    expect((await b.snapshot('p', OTPM)).inFlight.calls).toBe(1);
  });

  it('starts from nothing when Redis lost its keys, and a settle after that takes nothing below it', async () => {
    const b = fresh();
    const r1 = granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 3000) }));
    await db.redis.del(b.keys('p').bucket, b.keys('p').inFlight);
    const r2 = granted(await b.acquire({ pool: 'p', limits: OTPM, lane: 'critical', need: need(0, 3000) }));
    await b.settle(r1, { input_tokens: 0, output_tokens: 10 }, { immediate: true });
    expect((await b.snapshot('p', OTPM)).inFlight).toEqual({ calls: 1, outputTokens: 3000, tenants: {} });
    await b.settle(r2, { input_tokens: 0, output_tokens: 10 }, { immediate: true });
    expect((await b.snapshot('p', OTPM)).inFlight).toEqual({ calls: 0, outputTokens: 0, tenants: {} });
    expect(await db.redis.exists(b.keys('p').inFlight)).toBe(0);
  });
});
