import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  Bucket,
  type AcquireRequest,
  type AcquireResult,
  type BucketOptions,
  type DimensionSnapshot,
  type PoolLimits,
  type Reservation,
} from './bucket.js';
import { redisForFile } from '@headroom/testing/vitest';
import type { Lane } from './lanes.js';
import { parseRateLimitHeaders } from './rate-limit-headers.js';

const db = redisForFile();



/** A bucket under a prefix no other test uses. */
function fresh(options: BucketOptions = {}, conn: Redis = db.redis): Bucket {
  return new Bucket(conn, { prefix: `t-${randomUUID().slice(0, 8)}`, ...options });
}

/** Sleeps at least `ms` by the monotonic clock (a timer alone may fire up to 1 ms early). */
async function sleepAtLeast(ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) await new Promise((r) => setTimeout(r, Math.max(1, Math.ceil(end - performance.now()))));
}

function granted(r: AcquireResult): Reservation {
  if (r.status !== 'granted') throw new Error(`expected a grant, got ${JSON.stringify(r)}`);
  return r.reservation;
}

function dimOf(dimensions: readonly DimensionSnapshot[] | undefined, dimension: string): DimensionSnapshot {
  const d = dimensions?.find((x) => x.dimension === dimension);
  if (!d) throw new Error(`no ${dimension} in ${JSON.stringify(dimensions)}`);
  return d;
}

async function level(bucket: Bucket, pool: string, limits: PoolLimits, dimension: string) {
  const snap = await bucket.snapshot(pool, limits);
  return { level: dimOf(snap.dimensions, dimension).level, atMs: snap.atMs };
}

const ANTHROPIC: PoolLimits = { rpm: 50, itpm: 30_000, otpm: 8_000 };
const need = (inputTokens: number, outputTokens: number, requests = 1) => ({ inputTokens, outputTokens, requests });

describe('acquire', () => {
  it('keeps every key of a pool, tenants included, in one Redis Cluster slot', () => {
    const k = fresh().keys('sonnet-4');
    const tags = [k.bucket, k.cooldowns, k.stats, k.throttle, k.inFlight, k.tenantBucket('acme')].map((key) => /\{([^}]*)\}/.exec(key)?.[1]);
    expect(new Set(tags).size).toBe(1);
  });

  it('charges every dimension or none: a refusal on one dimension leaves the others untouched', async () => {
    const b = fresh();
    const base = { pool: 'p', limits: ANTHROPIC, lane: 'critical' as const };
    granted(await b.acquire({ ...base, need: need(29_000, 100) }));
    const before = await b.snapshot('p', ANTHROPIC);
    const r = await b.acquire({ ...base, need: need(2_000, 100) });
    expect(r).toMatchObject({ status: 'wait', reason: 'itpm' });
    const after = await b.snapshot('p', ANTHROPIC);
    const elapsed = after.atMs - before.atMs;
    for (const d of ['rpm', 'otpm'] as const) {
      const was = dimOf(before.dimensions, d);
      const now = dimOf(after.dimensions, d);
      expect(now.level).toBeCloseTo(Math.min(was.capacity, was.level + (elapsed * was.capacity) / 60_000), 6);
    }
  });

  it('answers never_fits, not a wait, when the need exceeds what the lane may ever draw', async () => {
    const b = fresh();
    const base = { pool: 'p', limits: ANTHROPIC };
    expect(await b.acquire({ ...base, lane: 'critical', need: need(50_000, 100) })).toMatchObject({
      status: 'never_fits', dimension: 'itpm', maxDrawable: 30_000,
    });
    // LOW keeps 40% back, so 20k of a 30k itpm never fits for LOW but does for CRITICAL.
    expect(await b.acquire({ ...base, lane: 'low', need: need(20_000, 100) })).toMatchObject({
      status: 'never_fits', dimension: 'itpm', maxDrawable: 18_000,
    });
    expect((await b.acquire({ ...base, lane: 'critical', need: need(20_000, 100) })).status).toBe('granted');
    expect(await b.acquire({ ...base, lane: 'critical', need: need(1, 100), tenant: { id: 'a', limits: { tpm: 50 } } })).toMatchObject({
      status: 'never_fits', dimension: 'tenant_tpm', maxDrawable: 50,
    });
    const snap = await b.snapshot('p', ANTHROPIC);
    expect(snap.counters.neverFits).toEqual({ itpm: 2, tenant_tpm: 1 });
  });

  it('charges OpenAI tokens/min with input + max output', async () => {
    const b = fresh();
    const limits = { rpm: 500, tpm: 60_000 };
    const r = granted(await b.acquire({ pool: 'gpt', limits, lane: 'critical', need: need(1000, 4000) }));
    const { level: l, atMs } = await level(b, 'gpt', limits, 'tpm');
    expect(l).toBeCloseTo(Math.min(60_000, 55_000 + (atMs - r.grantedAtMs)), 6);
  });

  it('leaves a dimension with no configured and no learned limit unbound', async () => {
    const b = fresh();
    const snap = await b.snapshot('p', { rpm: 10 });
    expect(snap.unbound).toEqual(['itpm', 'otpm', 'tpm']);
    for (let i = 0; i < 3; i++) granted(await b.acquire({ pool: 'p', limits: { rpm: 10 }, lane: 'critical', need: need(10_000_000, 10_000_000) }));
  });

  it('holds a bucket left idle at capacity: the burst after it is one capacity, no more', async () => {
    const b = fresh();
    const limits = { rpm: 60_000 }; // refills one request per ms
    granted(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(0, 0, 100) }));
    await sleepAtLeast(300); // refilled 300 into a 100 deficit
    granted(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(0, 0, 60_000) }));
    expect(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(0, 0, 50) })).toMatchObject({ status: 'wait', reason: 'rpm' });
  });

  it('applies a config change at the next call: the limits travel with each call', async () => {
    const b = fresh();
    granted(await b.acquire({ pool: 'p', limits: { rpm: 10 }, lane: 'critical', need: need(0, 0, 5) }));
    expect((await b.acquire({ pool: 'p', limits: { rpm: 10 }, lane: 'critical', need: need(0, 0, 6) })).status).toBe('wait');
    granted(await b.acquire({ pool: 'p', limits: { rpm: 100 }, lane: 'critical', need: need(0, 0, 6) }));
  });
});

describe('priority by reserve', () => {
  it('refuses LOW below 40% (+ need) while CRITICAL, HIGH and NORMAL still draw', async () => {
    const b = fresh();
    const limits = { rpm: 100 };
    const acquire = (lane: Lane, requests: number) => b.acquire({ pool: 'p', limits, lane, need: need(0, 0, requests) });
    granted(await acquire('critical', 58)); // level 42
    expect((await acquire('low', 2)).status).toBe('granted'); // 40 left: exactly the reserve
    expect(await acquire('low', 1)).toMatchObject({ status: 'wait', reason: 'rpm' });
    granted(await acquire('normal', 15)); // 25 left, NORMAL keeps 20
    expect((await acquire('normal', 6)).status).toBe('wait');
    granted(await acquire('high', 19)); // 6 left, HIGH keeps 5
    expect((await acquire('high', 2)).status).toBe('wait');
    granted(await acquire('critical', 6)); // CRITICAL may take the last one
    expect((await acquire('critical', 1)).status).toBe('wait');
    const snap = await b.snapshot('p', limits);
    expect(snap.counters.grants).toEqual({ critical: 2, low: 1, normal: 1, high: 1 });
    expect(snap.counters.waits).toEqual({ rpm: 4 });
  });

  it("holds a queued-up tenant's job above the fair reserve, which a fresh tenant's job draws (wait reason fair_share)", async () => {
    const b = fresh();
    const limits = { rpm: 100 }; // capacity 100 (a minute's burst), refilling 1 per 600 ms
    const acquire = (requests: number, fairReserve?: number) =>
      b.acquire({ pool: 'p', limits, lane: 'normal', need: need(0, 0, requests), ...(fairReserve === undefined ? {} : { fairReserve }) });
    granted(await acquire(75, 0.05)); // 25 left: NORMAL keeps 20, a queued-up tenant 5 more
    const held = await acquire(1, 0.05);
    expect(held).toMatchObject({ status: 'wait', reason: 'fair_share' });
    // The wait is for the one request above 25 to refill, not for NORMAL's floor.
    expect(held.status === 'wait' ? held.waitMs : 0).toBeGreaterThan(500);
    expect(held.status === 'wait' ? held.waitMs : Infinity).toBeLessThanOrEqual(600);
    granted(await acquire(5)); // a fresh tenant's job draws the fair reserve: 20 left
    expect(await acquire(1)).toMatchObject({ status: 'wait', reason: 'rpm' });
    expect((await b.snapshot('p', limits)).counters.waits).toEqual({ fair_share: 1, rpm: 1 });
  });

  it('lets a need the fair reserve would make too large ignore it: fairness never fails or starves a job', async () => {
    const b = fresh();
    // NORMAL may draw 80 of 100; 79 + the fair reserve's 5 would need more than the capacity.
    granted(await b.acquire({ pool: 'p', limits: { rpm: 100 }, lane: 'normal', need: need(0, 0, 79), fairReserve: 0.05 }));
    await expect(b.acquire({ pool: 'p', limits: { rpm: 100 }, lane: 'normal', need: need(0, 0, 1), fairReserve: 0.8 })).rejects.toThrow(/fairReserve/);
  });

  it('gives a lone LOW stream the full refill rate: reserves cost no throughput', async () => {
    const b = fresh();
    const limits = { rpm: 1200 }; // 20 per second
    const ratePerMs = 1200 / 60_000;
    // Start the stream with the bucket exactly at LOW's reserve, so it only ever lives on refill.
    const start = granted(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(0, 0, 720) })).grantedAtMs;
    let grants = 0;
    let lastGrantAt = start;
    const deadline = performance.now() + 2000;
    while (performance.now() < deadline) {
      const r = await b.acquire({ pool: 'p', limits, lane: 'low', need: need(0, 0, 1) });
      if (r.status === 'granted') {
        grants++;
        lastGrantAt = r.atMs;
      } else if (r.status === 'wait') {
        await sleepAtLeast(r.waitMs);
      } else throw new Error('never_fits');
    }
    // Refill that arrives while the stream is late is banked (the bucket is far from full): claim
    // what a late timer left behind, and the stream has drawn all that refilled, to one request.
    for (;;) {
      const r = await b.acquire({ pool: 'p', limits, lane: 'low', need: need(0, 0, 1) });
      if (r.status !== 'granted') break;
      grants++;
      lastGrantAt = r.atMs;
    }
    const refilled = (lastGrantAt - start) * ratePerMs;
    expect(grants).toBeGreaterThan(20);
    expect(grants).toBeGreaterThan(refilled - 1);
    expect(grants).toBeLessThanOrEqual(refilled + 1e-6);
  });
});

describe('waits', () => {
  it('returns the exact wait: it matches the refill maths, and acquiring after sleeping it succeeds', async () => {
    const cases: { name: string; limits: PoolLimits; lane: Lane; drain: AcquireRequest['need']; ask: AcquireRequest['need']; reason: string; cap: number; charged: number; asked: number }[] = [
      { name: 'rpm', limits: { rpm: 600 }, lane: 'critical', drain: need(0, 0, 600), ask: need(0, 0, 3), reason: 'rpm', cap: 600, charged: 600, asked: 3 },
      { name: 'itpm', limits: ANTHROPIC, lane: 'critical', drain: need(29_900, 10), ask: need(400, 10), reason: 'itpm', cap: 30_000, charged: 29_900, asked: 400 },
      { name: 'otpm for HIGH', limits: ANTHROPIC, lane: 'high', drain: need(10, 7_000), ask: need(10, 900), reason: 'otpm', cap: 8000, charged: 7000, asked: 900 },
      { name: 'tpm for LOW', limits: { tpm: 60_000 }, lane: 'low', drain: need(20_000, 15_000), ask: need(1000, 500), reason: 'tpm', cap: 60_000, charged: 35_000, asked: 1500 },
    ];
    for (const c of cases) {
      const b = fresh();
      const t0 = granted(await b.acquire({ pool: 'p', limits: c.limits, lane: 'critical', need: c.drain })).grantedAtMs;
      const r = await b.acquire({ pool: 'p', limits: c.limits, lane: c.lane, need: c.ask });
      if (r.status !== 'wait') throw new Error(`${c.name}: expected a wait, got ${r.status}`);
      expect(r.reason, c.name).toBe(c.reason);
      const rate = c.cap / 60_000;
      const reserve = { critical: 0, high: 0.05, normal: 0.2, low: 0.4, batch: 0 }[c.lane];
      const levelAtAsk = c.cap - c.charged + (r.atMs - t0) * rate;
      const exact = (c.asked + reserve * c.cap - levelAtAsk) / rate;
      expect(r.waitMs, c.name).toBeGreaterThanOrEqual(exact - 1e-6);
      expect(r.waitMs, c.name).toBeLessThan(exact + 1);
      await sleepAtLeast(r.waitMs);
      expect((await b.acquire({ pool: 'p', limits: c.limits, lane: c.lane, need: c.ask })).status, c.name).toBe('granted');
    }
  });

  it('waits for the tenant bucket, checked in the same call, and charges it only on a grant', async () => {
    const b = fresh();
    const tenant = { id: 'acme', limits: { tpm: 6000, rpm: 600 } };
    granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(4000, 1900), tenant }));
    const r = await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(200, 100), tenant });
    expect(r).toMatchObject({ status: 'wait', reason: 'tenant_tpm' });
    // Another tenant draws from the same pool untouched by acme's limit.
    granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(200, 100), tenant: { id: 'other', limits: { tpm: 6000 } } }));
    if (r.status !== 'wait') return;
    await sleepAtLeast(r.waitMs);
    granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(200, 100), tenant }));
  });
});

describe('settle', () => {
  it('does not charge cache reads, charges cache writes, refunds unused output (Anthropic)', async () => {
    const b = fresh();
    const r = granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(10_000, 4000) }));
    const s = await b.settle(r, { input_tokens: 2000, cache_creation_input_tokens: 3000, cache_read_input_tokens: 20_000, output_tokens: 500 });
    expect(s).toMatchObject({ status: 'settled', delta: { inputTokens: -5000, outputTokens: -3500, tokens: 0, tenantTokens: 0 } });
    const input = await level(b, 'p', ANTHROPIC, 'itpm');
    expect(input.level).toBeCloseTo(Math.min(30_000, 30_000 - 5000 + ((input.atMs - r.grantedAtMs) * 30_000) / 60_000), 6);
    const output = await level(b, 'p', ANTHROPIC, 'otpm');
    expect(output.level).toBeCloseTo(Math.min(8000, 8000 - 500 + ((output.atMs - r.grantedAtMs) * 8000) / 60_000), 6);
  });

  it('charges the difference when the input was underestimated', async () => {
    const b = fresh();
    const r = granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(1000, 100) }));
    const s = await b.settle(r, { input_tokens: 1800, output_tokens: 100 });
    expect(s).toMatchObject({ status: 'settled', delta: { inputTokens: 800, outputTokens: 0 } });
    const { level: l, atMs } = await level(b, 'p', ANTHROPIC, 'itpm');
    expect(l).toBeCloseTo(30_000 - 1800 + ((atMs - r.grantedAtMs) * 30_000) / 60_000, 6);
  });

  it('settles OpenAI tokens/min to prompt + completion, and the tenant bucket likewise', async () => {
    const b = fresh();
    const limits = { rpm: 500, tpm: 60_000 };
    const tenant = { id: 'acme', limits: { tpm: 12_000 } };
    const r = granted(await b.acquire({ pool: 'gpt', limits, lane: 'critical', need: need(1000, 4000), tenant }));
    const s = await b.settle(r, { prompt_tokens: 1100, completion_tokens: 300 });
    expect(s).toMatchObject({ status: 'settled', delta: { tokens: -3600, tenantTokens: -3600, inputTokens: 0, outputTokens: 0 } });
    const snap = await b.snapshot('gpt', limits, { tenants: { acme: tenant.limits } });
    const elapsed = snap.atMs - r.grantedAtMs;
    expect(dimOf(snap.dimensions, 'tpm').level).toBeCloseTo(Math.min(60_000, 60_000 - 1400 + elapsed), 6);
    expect(dimOf(snap.tenants.acme, 'tenant_tpm').level).toBeCloseTo(Math.min(12_000, 12_000 - 1400 + elapsed / 5), 6);
  });

  it('settles a reservation once: a repeated settle refunds nothing more', async () => {
    const b = fresh();
    const r = granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(100, 4000) }));
    expect((await b.settle(r, { input_tokens: 100, output_tokens: 0 })).status).toBe('settled');
    expect((await b.settle(r, { input_tokens: 100, output_tokens: 0 })).status).toBe('duplicate');
    const { level: l, atMs } = await level(b, 'p', ANTHROPIC, 'otpm');
    expect(l).toBeCloseTo(Math.min(8000, 8000 + ((atMs - r.grantedAtMs) * 8000) / 60_000), 6);
  });

  it('keeps the charge of a reservation never settled, and creates no key for it', async () => {
    const b = fresh();
    const limits = { otpm: 6000 };
    const r = granted(await b.acquire({ pool: 'p', limits, lane: 'critical', need: need(0, 3000) }));
    const { level: l, atMs } = await level(b, 'p', limits, 'otpm');
    expect(l).toBeCloseTo(3000 + ((atMs - r.grantedAtMs) * 6000) / 60_000, 6);
    // The pool's own state (levels, learned limits, grant counts) and its one set of calls in
    // flight (an entry there, no key, per reservation: bucket-in-flight.test.ts).
    expect((await db.redis.keys(`{${b.prefix}:*`)).sort()).toEqual([b.keys('p').inFlight, b.keys('p').bucket]);
  });
});

describe('sync', () => {
  const headers = (remaining: { input?: number; output?: number; requests?: number }, limits = { input: 30_000, output: 8000, requests: 50 }) =>
    parseRateLimitHeaders({
      'anthropic-ratelimit-requests-limit': String(limits.requests),
      'anthropic-ratelimit-input-tokens-limit': String(limits.input),
      'anthropic-ratelimit-output-tokens-limit': String(limits.output),
      ...(remaining.requests === undefined ? {} : { 'anthropic-ratelimit-requests-remaining': String(remaining.requests) }),
      ...(remaining.input === undefined ? {} : { 'anthropic-ratelimit-input-tokens-remaining': String(remaining.input) }),
      ...(remaining.output === undefined ? {} : { 'anthropic-ratelimit-output-tokens-remaining': String(remaining.output) }),
    });

  it('lowers a level the provider reports lower, and never raises one', async () => {
    const b = fresh();
    const r = granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(10_000, 100, 10) }));
    // The provider saw traffic from outside the fleet: 5 requests left by its count, 40 by ours.
    const s = await b.sync('p', ANTHROPIC, headers({ requests: 5, input: 29_000 }));
    expect(s.lowered).toEqual(['rpm']);
    const rpm = await level(b, 'p', ANTHROPIC, 'rpm');
    expect(rpm.level).toBeCloseTo(5 + ((rpm.atMs - s.atMs) * 50) / 60_000, 6);
    const itpm = await level(b, 'p', ANTHROPIC, 'itpm');
    expect(itpm.level).toBeCloseTo(20_000 + ((itpm.atMs - r.grantedAtMs) * 30_000) / 60_000, 6);
    const snap = await b.snapshot('p', ANTHROPIC);
    expect(snap.counters.lowered).toEqual({ rpm: 1 });
  });

  it('treats the rounding of Anthropic token counts (nearest thousand) as slack, not usage', async () => {
    const b = fresh();
    const r = granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(17_600, 10) }));
    // Ours: 12,400 left. Theirs: "12,000", which may be anything up to 12,499: no evidence of usage.
    expect((await b.sync('p', ANTHROPIC, headers({ input: 12_000 }))).lowered).toEqual([]);
    // "11,000" means at most 11,499 left: lower to that, no further.
    const s = await b.sync('p', ANTHROPIC, headers({ input: 11_000 }));
    expect(s.lowered).toEqual(['itpm']);
    const { level: l, atMs } = await level(b, 'p', ANTHROPIC, 'itpm');
    expect(l).toBeCloseTo(11_500 + ((atMs - s.atMs) * 30_000) / 60_000, 6);
    expect(s.atMs).toBeGreaterThan(r.grantedAtMs);
  });

  it('learns limits the config leaves out from the -limit headers, and the config still wins', async () => {
    const b = fresh();
    const config = { rpm: 40 }; // no token limits configured
    expect((await b.snapshot('p', config)).unbound).toEqual(['itpm', 'otpm', 'tpm']);
    granted(await b.acquire({ pool: 'p', limits: config, lane: 'critical', need: need(40_000, 100) }));
    await b.sync('p', config, headers({}, { input: 30_000, output: 8000, requests: 50 }));
    const snap = await b.snapshot('p', config);
    expect(snap.learned).toEqual({ rpm: 50, itpm: 30_000, otpm: 8000 });
    expect(snap.dimensions.map((d) => [d.dimension, d.capacity, d.source])).toEqual([
      ['rpm', 40, 'config'], ['itpm', 30_000, 'learned'], ['otpm', 8000, 'learned'],
    ]);
    expect(await b.acquire({ pool: 'p', limits: config, lane: 'critical', need: need(40_000, 100) })).toMatchObject({
      status: 'never_fits', dimension: 'itpm', maxDrawable: 30_000,
    });
  });

  it("paces by the provider's announced limit where the config sets a higher one", async () => {
    // The config says a tier the account does not have: 100M tokens/min where OpenAI grants 2M.
    const b = fresh();
    const config = { rpm: 100_000, tpm: 100_000_000 };
    const openai = (remainingTokens: number) =>
      parseRateLimitHeaders({
        'x-ratelimit-limit-requests': '5000',
        'x-ratelimit-remaining-requests': '4999',
        'x-ratelimit-limit-tokens': '2000000',
        'x-ratelimit-remaining-tokens': String(remainingTokens),
      });
    // A quarter of the configured capacity in use when the headers first arrive: a quarter of the
    // announced one after (the level, what is left, keeps its fullness at the new scale).
    granted(await b.acquire({ pool: 'p', limits: config, lane: 'critical', need: need(25_000_000, 0) }));
    await b.sync('p', config, openai(2_000_000));
    const snap = await b.snapshot('p', config);
    expect(snap.dimensions.map((d) => [d.dimension, d.capacity, d.source])).toEqual([
      ['rpm', 5000, 'learned'], ['tpm', 2_000_000, 'learned'],
    ]);
    expect(dimOf(snap.dimensions, 'tpm').level).toBeGreaterThan(1_490_000);
    expect(dimOf(snap.dimensions, 'tpm').level).toBeLessThan(1_510_000);
    // With the level measured against the configured 100M, NORMAL (which leaves 20% of capacity
    // to the lanes above) waited ~10 s for 13 tokens with 2M left at the provider.
    await b.sync('p', config, openai(1_999_990));
    const r = granted(await b.acquire({ pool: 'p', limits: config, lane: 'normal', need: need(8, 5) }));
    expect(r.chargedAgainst.tpm).toBe(2_000_000);
    expect(await b.settle(r, { inputTokens: 8, outputTokens: 3 })).toMatchObject({ status: 'settled', delta: { tokens: -2 } });
    // More than the announced limit never fits, whatever the config says.
    expect(await b.acquire({ pool: 'p', limits: config, lane: 'critical', need: need(2_500_000, 0) })).toMatchObject({ status: 'never_fits', dimension: 'tpm', maxDrawable: 2_000_000 });
  });

  it('derives the level from an OpenAI reset when no remaining is sent', async () => {
    const b = fresh();
    const limits = { tpm: 60_000 };
    // Full again in 30 s at 1,000 tokens/s: 30,000 tokens are in use by the provider's count.
    const s = await b.sync('p', limits, parseRateLimitHeaders({ 'x-ratelimit-limit-tokens': '60000', 'x-ratelimit-reset-tokens': '30s' }));
    expect(s.lowered).toEqual(['tpm']);
    const { level: l, atMs } = await level(b, 'p', limits, 'tpm');
    expect(l).toBeCloseTo(30_000 + (atMs - s.atMs), 6);
  });
});

describe('cooldown', () => {
  it('makes acquire for that model wait until the cooldown ends, then expires leaving nothing', async () => {
    const b = fresh();
    const { untilMs } = await b.cooldown('p', 'sonnet', { durationMs: 300 });
    if (untilMs === null) throw new Error('cooldown not set');
    const r = await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(10, 10), model: 'sonnet' });
    expect(r).toMatchObject({ status: 'wait', reason: 'cooldown' });
    if (r.status !== 'wait') return;
    expect(r.waitMs).toBeLessThanOrEqual(300);
    expect(r.waitMs).toBeGreaterThanOrEqual(untilMs - r.atMs - 1);
    // Other models of the pool, and calls without a model, are not held back.
    granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(10, 10), model: 'haiku' }));
    expect((await b.snapshot('p', ANTHROPIC)).cooldowns.map((c) => c.model)).toEqual(['sonnet']);
    await sleepAtLeast(r.waitMs);
    granted(await b.acquire({ pool: 'p', limits: ANTHROPIC, lane: 'critical', need: need(10, 10), model: 'sonnet' }));
    await sleepAtLeast(5);
    expect(await db.redis.exists(b.keys('p').cooldowns)).toBe(0);
    const snap = await b.snapshot('p', ANTHROPIC);
    expect(snap.cooldowns).toEqual([]);
    expect(snap.counters.cooldownsSet).toBe(1);
    expect(snap.counters.waits).toEqual({ cooldown: 1 });
  });

  it('only ever lengthens a cooldown, and ignores an end already past', async () => {
    const b = fresh();
    const long = await b.cooldown('p', 'sonnet', { durationMs: 60_000 });
    const short = await b.cooldown('p', 'sonnet', { durationMs: 1000 });
    expect(short.untilMs).toBe(long.untilMs);
    expect(await b.cooldown('p', 'haiku', { untilMs: 1000 })).toEqual({ untilMs: null });
    expect((await b.snapshot('p', ANTHROPIC)).cooldowns.map((c) => c.model)).toEqual(['sonnet']);
  });
});

/** One charge the bucket made, at Redis time; settle corrections are signed. */
interface Charge {
  atMs: number;
  grant: boolean;
  tenant: string;
  amounts: Record<'rpm' | 'itpm' | 'otpm' | 'tpm' | 'tenant_tpm' | 'tenant_rpm', number>;
}

/**
 * The largest net charge in any window [t, t + T] that ends at a grant (a moment the fleet sends).
 * Windows ending at an upward settle are left out on purpose: an underestimate was already sent,
 * and the bucket can only hold the next sends back by it, which windows ending at grants check.
 */
function worstWindow(charges: Charge[], dim: keyof Charge['amounts'], windowMs: number): number {
  const events = charges.filter((c) => c.amounts[dim] !== 0);
  let worst = 0;
  events.forEach((first, i) => {
    let sum = 0;
    for (const e of events.slice(i)) {
      if (e.atMs > first.atMs + windowMs) break;
      sum += e.amounts[dim];
      if (e.grant && sum > worst) worst = sum;
    }
  });
  return worst;
}

describe('the fleet invariant', () => {
  it('never grants more than capacity + rate x T in any window T, in any dimension, across 8 clients', async () => {
    const prefix = `t-${randomUUID().slice(0, 8)}`;
    // Small limits, sized so that every dimension comes close to binding (net of refunds).
    const limits = { rpm: 300, itpm: 90_000, otpm: 30_000, tpm: 120_000 };
    const tenants = { a: { tpm: 60_000, rpm: 200 }, b: { tpm: 90_000 } } as const;
    const lanes: Lane[] = ['critical', 'critical', 'high', 'normal', 'low'];
    const clients = await Promise.all(Array.from({ length: 8 }, async () => {
      const conn = new Redis(db.url, { lazyConnect: true });
      await conn.connect();
      return conn;
    }));
    const charges: Charge[] = [];
    const settles: Promise<void>[] = [];
    let waits = 0;
    let upward = 0;
    const deadline = performance.now() + 10_000;
    const rnd = (lo: number, hi: number) => lo + Math.random() * (hi - lo);
    try {
      await Promise.all(clients.map(async (conn) => {
        const b = new Bucket(conn, { prefix });
        while (performance.now() < deadline) {
          const tenant = Math.random() < 0.5 ? 'a' : 'b';
          const lane = lanes[Math.floor(Math.random() * lanes.length)] ?? 'critical';
          const ask = need(Math.round(rnd(50, 600)), Math.round(rnd(20, 300)));
          const r = await b.acquire({ pool: 'p', limits, lane, need: ask, tenant: { id: tenant, limits: tenants[tenant] } });
          if (r.status === 'never_fits') throw new Error(`never_fits ${JSON.stringify(r)}`);
          if (r.status === 'wait') {
            // Greedy clients: back at the exact wait, or sooner with another need and lane.
            waits++;
            await sleepAtLeast(Math.min(r.waitMs, rnd(0, 100), Math.max(0, deadline - performance.now())));
            continue;
          }
          const tok = ask.inputTokens + ask.outputTokens;
          charges.push({
            atMs: r.atMs, grant: true, tenant,
            amounts: { rpm: 1, itpm: ask.inputTokens, otpm: ask.outputTokens, tpm: tok, tenant_tpm: tok, tenant_rpm: tenant === 'a' ? 1 : 0 },
          });
          await new Promise((res) => setTimeout(res, rnd(0, 30)));
          // Output never exceeds max_tokens; the input estimate may be off either way.
          const input = Math.round(ask.inputTokens * rnd(0.6, 1.25));
          // As a worker does: not awaited, so this client's next acquire carries it.
          settles.push(b.settle(r.reservation, { input_tokens: input, output_tokens: Math.round(ask.outputTokens * rnd(0, 1)) }).then((s) => {
            if (s.status !== 'settled') throw new Error('settle expired');
            charges.push({
              atMs: s.atMs, grant: false, tenant,
              amounts: { rpm: 0, itpm: s.delta.inputTokens, otpm: s.delta.outputTokens, tpm: s.delta.tokens, tenant_tpm: s.delta.tenantTokens, tenant_rpm: 0 },
            });
          }));
          if (input > ask.inputTokens) upward++;
        }
        await b.close();
      }));
      await Promise.all(settles);
    } finally {
      for (const c of clients) c.disconnect();
    }
    // A carried settle is applied before the grant of the call that carries it, at the same time.
    charges.sort((x, y) => x.atMs - y.atMs || Number(x.grant) - Number(y.grant));
    expect(waits).toBeGreaterThan(0);
    expect(upward).toBeGreaterThan(0);

    const windows = [0, 50, 250, 1000, 3000, 10_000];
    const checks: [keyof Charge['amounts'], number, Charge[]][] = [
      ['rpm', limits.rpm, charges], ['itpm', limits.itpm, charges], ['otpm', limits.otpm, charges], ['tpm', limits.tpm, charges],
      ['tenant_tpm', tenants.a.tpm, charges.filter((c) => c.tenant === 'a')],
      ['tenant_rpm', tenants.a.rpm, charges.filter((c) => c.tenant === 'a')],
      ['tenant_tpm', tenants.b.tpm, charges.filter((c) => c.tenant === 'b')],
    ];
    for (const [dim, cap, log] of checks) {
      for (const T of windows) {
        const bound = cap + (cap / 60_000) * T;
        if (process.env.BUCKET_DEBUG) console.log(dim, cap, T, worstWindow(log, dim, T).toFixed(1), bound.toFixed(1));
        expect(worstWindow(log, dim, T), `${dim} (cap ${cap}) over ${T} ms`).toBeLessThanOrEqual(bound + 1e-3);
      }
    }
    // The test has teeth: the fleet pressed against the limits, drawing well past one bucketful.
    expect(worstWindow(charges, 'rpm', 10_000)).toBeGreaterThan(limits.rpm * 1.05);
  }, 60_000);
});

describe('adaptive throttle and retry budget (wiring; the maths is in model-throttle.test.ts)', () => {
  // Windows of a minute, so the few ms this test takes decay nothing that matters.
  const THROTTLE = { k: 2, windowMs: 60_000, probeIntervalMs: 1_000, budget: { ratio: 0.2, windowMs: 60_000, minPerSecond: 0.06 } };
  const LIMITS: PoolLimits = { rpm: 6_000, itpm: 10_000_000, otpm: 10_000_000 };
  const ask = (b: Bucket, model: string, extra: Partial<AcquireRequest> = {}) =>
    b.acquire({ pool: 'p', limits: LIMITS, lane: 'critical', need: need(10, 10), model, ...extra });

  it('turns a model the fleet reports dead into probes: the next call waits with reason throttle', async () => {
    const b = fresh({ throttle: THROTTLE });
    expect(await ask(b, 'm')).toMatchObject({ status: 'granted', throttle: 'closed', unhealthyRun: 0 });
    for (let i = 0; i < 10; i++) b.report('p', 'm', false);
    // The reports ride on this acquire and count before its check; a probe granted says how
    // many unhealthy outcomes in a row came before it, fleet-wide.
    const r = await ask(b, 'm');
    expect(r).toMatchObject({ status: 'granted', throttle: 'open', unhealthyRun: 10 });
    // One probe's token may be there; the one after it is not.
    const next = r.status === 'granted' ? await ask(b, 'm') : r;
    expect(next).toMatchObject({ status: 'wait', reason: 'throttle', throttle: 'open' });
    // Another model of the same pool is not touched.
    expect(await ask(b, 'other')).toMatchObject({ status: 'granted', throttle: 'closed' });
    const [view] = await b.throttles('p', LIMITS, ['m', 'never-called']);
    expect(view).toMatchObject({ model: 'm', state: 'open', successRatio: 0, admitRatio: 0, allowedRpm: 60 });
    const snap = await b.snapshot('p', LIMITS, { models: ['m'] });
    expect(snap.throttles.map((t) => t.model)).toEqual(['m']);
    expect(snap.counters.waits.throttle).toBeGreaterThanOrEqual(1);
  });

  it('keeps a model whose calls half succeed closed', async () => {
    const b = fresh({ throttle: THROTTLE });
    for (let i = 0; i < 20; i++) b.report('p', 'm', i % 2 === 0);
    await b.flush();
    // The flush carried one batch with calls served in it: the run is over.
    expect(await ask(b, 'm')).toMatchObject({ status: 'granted', throttle: 'closed', unhealthyRun: 0 });
    const [view] = await b.throttles('p', LIMITS, ['m']);
    expect(view!.successRatio).toBeCloseTo(0.5, 2);
    expect(view!.admitRatio).toBe(1);
  });

  it('spends the retry budget on retries only, and makes a lower lane wait for it first', async () => {
    const b = fresh({ throttle: THROTTLE });
    // 100 first calls: a budget of 0.2 x 100 + 3.6 (0.06/s over a minute) = 23.6 retries.
    for (let i = 0; i < 100; i++) expect((await ask(b, 'm')).status).toBe('granted');
    let lowRetries = 0;
    while ((await ask(b, 'm', { lane: 'low', retry: true })).status === 'granted') lowRetries += 1;
    // LOW leaves 90% of the ratio's share (its retryReserve) to the lanes above; the floor is
    // every lane's: 3.6 + 0.1 x 20.
    expect(lowRetries).toBe(Math.floor(3.6 + 0.1 * 20));
    const low = await ask(b, 'm', { lane: 'low', retry: true });
    expect(low).toMatchObject({ status: 'wait', reason: 'retry_budget' });
    let highRetries = 0;
    while ((await ask(b, 'm', { lane: 'high', retry: true })).status === 'granted') highRetries += 1;
    // HIGH leaves 20%: 3.6 + 0.8 x 20 in all.
    expect(lowRetries + highRetries).toBe(Math.floor(3.6 + 0.8 * 20));
    expect(await ask(b, 'm', { lane: 'high', retry: true })).toMatchObject({ status: 'wait', reason: 'retry_budget' });
    // A CRITICAL retry, not exempt, takes what HIGH left; exempt (CRITICAL's default), the budget
    // does not hold it, and counts it: past the budget now, HIGH waits longer.
    let criticalRetries = 0;
    while ((await ask(b, 'm', { retry: true, retryBudgetExempt: false })).status === 'granted') criticalRetries += 1;
    expect(lowRetries + highRetries + criticalRetries).toBe(23);
    expect(await ask(b, 'm', { retry: true, retryBudgetExempt: false })).toMatchObject({ status: 'wait', reason: 'retry_budget' });
    for (let i = 0; i < 5; i++) expect(await ask(b, 'm', { retry: true })).toMatchObject({ status: 'granted' });
    const [spent] = await b.throttles('p', LIMITS, ['m']);
    expect(spent!.retryBudgetLeft).toBeLessThan(-4);
    // First calls still go.
    expect((await ask(b, 'm')).status).toBe('granted');
  });

  it('takes back the place of a retry the provider served, or never got: only retries that fail spend the budget', async () => {
    const b = fresh({ throttle: THROTTLE });
    // No first calls: the floor alone, 3.6 retries.
    let granted = 0;
    while ((await ask(b, 'm', { lane: 'low', retry: true })).status === 'granted') granted += 1;
    expect(granted).toBe(3);
    // Their outcomes come in: two served, one failed. A served first call gives nothing back.
    b.report('p', 'm', true, { retry: true });
    b.report('p', 'm', true, { retry: true });
    b.report('p', 'm', false, { retry: true });
    b.report('p', 'm', true);
    let more = 0;
    while ((await ask(b, 'm', { lane: 'low', retry: true })).status === 'granted') more += 1;
    expect(more).toBe(2);
    // One of those two is handed back unsent (another job of the pool was ahead of it).
    b.retryWithoutOutcome('p', 'm');
    expect(await ask(b, 'm', { lane: 'low', retry: true })).toMatchObject({ status: 'granted' });
    expect(await ask(b, 'm', { lane: 'low', retry: true })).toMatchObject({ status: 'wait', reason: 'retry_budget' });
    // Neither moves the model's health: four outcomes reported, three of them served.
    const [view] = await b.throttles('p', LIMITS, ['m']);
    expect(view!.successRatio).toBeCloseTo(3 / 4, 2);
  });

  it('is off without the throttle option: reports are dropped and nothing is written', async () => {
    const b = fresh();
    b.report('p', 'm', false);
    await b.flush();
    for (let i = 0; i < 5; i++) expect(await ask(b, 'm', { retry: true })).toMatchObject({ status: 'granted' });
    expect(await db.redis.exists(b.keys('p').throttle)).toBe(0);
    expect(await b.throttles('p', LIMITS, ['m'])).toEqual([]);
  });

  it('refuses throttle options out of range by name', () => {
    expect(() => fresh({ throttle: { ...THROTTLE, k: 0 } })).toThrow(/throttle\.k must be a number of at least 1/);
    expect(() => fresh({ throttle: { ...THROTTLE, budget: { ...THROTTLE.budget, ratio: 1.5 } } })).toThrow(/throttle\.budget\.ratio/);
  });
});
