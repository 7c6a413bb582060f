/**
 * The adaptive throttle and retry budget (lua/includes/model-throttle.lua) with an injected
 * clock: the include's own functions, evaluated on a real Redis by a small harness that hands
 * them the time, so every figure below is exact and no test waits. The acquire script calls the
 * same `throttleCheck` and `chargeThrottle`; bucket.test.ts covers that wiring with Redis time.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { redisForFile } from '@headroom/testing/vitest';

const INCLUDE = readFileSync(fileURLToPath(new URL('./lua/includes/model-throttle.lua', import.meta.url)), 'utf8');
// ARGV: the six params, then op, now, state (JSON), pool rpm ('' = none), then per op.
const HARNESS = `${INCLUDE}
local p = throttleParams(1)
local op, now, cap = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[10])
local t = cjson.decode(ARGV[9])
if t[1] == cjson.null then t[1] = nil end
local out = {}
if op == 'outcome' then
  throttleAt(t, now, p, cap)
  recordOutcomes(t, tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13]))
else
  local retry = ARGV[11] == '1'
  local wait, reason, state = throttleCheck(t, now, p, cap, tonumber(ARGV[12]), retry, tonumber(ARGV[13]), ARGV[14] == '1')
  out.wait, out.reason, out.state = wait, reason or '', state
  if op == 'acquire' and wait == 0 then
    chargeThrottle(t, retry, state)
    out.granted = true
  end
end
local ratio, s, rate = throttleAt({ t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8] }, now, p, cap)
local total, left = budgetOf(t, p)
out.ratio, out.success, out.rate, out.budget, out.budgetLeft = ratio, s, rate, total, left
out.t = t
return cjson.encode(out)
`;

const db = redisForFile();

const STATES = ['closed', 'throttled', 'open'] as const;
interface Step {
  wait: number;
  reason: string;
  state: (typeof STATES)[number];
  granted: boolean;
  ratio: number;
  success: number;
  rate: number;
  budget: number;
  budgetLeft: number;
}

/** One model's throttle state, stepped by hand: every call names its time. */
class Model {
  state: (number | null)[] = [null, 0, 0, 0, 0, 0, 0, 0, 1, 0];
  constructor(
    readonly params = { k: 2, windowMs: 2_000, probeIntervalMs: 1_000, ratio: 0.2, budgetWindowMs: 10_000, minPerSecond: 1 },
    readonly poolRpm: number | '' = 6_000,
  ) {}

  async #run(op: string, now: number, rest: (string | number)[]): Promise<Step> {
    const p = this.params;
    const raw = (await db.redis.eval(HARNESS, 0, p.k, p.windowMs, p.probeIntervalMs, p.ratio, p.budgetWindowMs, p.minPerSecond, op, now, JSON.stringify(this.state), this.poolRpm, ...rest)) as string;
    const out = JSON.parse(raw) as Omit<Step, 'state' | 'granted'> & { t: number[]; state?: number; granted?: boolean };
    this.state = out.t;
    return { ...out, state: STATES[out.state ?? 0]!, granted: out.granted === true, reason: out.reason ?? '' };
  }

  /** `calls` outcomes at `now`, `oks` of them served, `servedRetries` of those retries. */
  outcome(now: number, calls: number, oks: number, servedRetries = 0): Promise<Step> {
    return this.#run('outcome', now, [calls, oks, servedRetries]);
  }

  /** Asks for a call (and takes it when it may go). */
  acquire(now: number, opts: { retry?: boolean; reserve?: number; retryReserve?: number; exempt?: boolean } = {}): Promise<Step> {
    return this.#run('acquire', now, [opts.retry ? 1 : 0, opts.reserve ?? 0, opts.retryReserve ?? 0, opts.exempt ? 1 : 0]);
  }

  /** Only asks. */
  peek(now: number, opts: { retry?: boolean; reserve?: number; retryReserve?: number; exempt?: boolean } = {}): Promise<Step> {
    return this.#run('peek', now, [opts.retry ? 1 : 0, opts.reserve ?? 0, opts.retryReserve ?? 0, opts.exempt ? 1 : 0]);
  }
}

/**
 * Offers `perSec` calls a second from `from` to `to` (ms), evenly spaced; each call the throttle
 * lets through is answered at once, served with probability `serve` (drawn from a seeded
 * sequence). Returns the grants per second.
 */
async function offer(m: Model, from: number, to: number, perSec: number, serve: number | ((t: number) => number), opts: { reserve?: number } = {}): Promise<number[]> {
  const perSecond: number[] = [];
  let seed = 7;
  const random = () => {
    seed = (seed * 16_807) % 2_147_483_647;
    return seed / 2_147_483_647;
  };
  for (let t = from; t < to; t += 1000 / perSec) {
    const r = await m.acquire(t, opts);
    if (!r.granted) continue;
    const second = Math.floor((t - from) / 1000);
    perSecond[second] = (perSecond[second] ?? 0) + 1;
    const p = typeof serve === 'number' ? serve : serve(t);
    await m.outcome(t, 1, random() < p ? 1 : 0);
  }
  return Array.from({ length: Math.ceil((to - from) / 1000) }, (_, i) => perSecond[i] ?? 0);
}
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe('adaptive throttle', () => {
  it('trusts a model it has no history of: closed, admit ratio 1', async () => {
    const r = await new Model().peek(1_000);
    expect(r).toMatchObject({ state: 'closed', wait: 0, ratio: 1, success: 1 });
  });

  it('keeps a model that serves half its calls at full rate (k = 2): every call offered goes', async () => {
    const m = new Model();
    const grants = await offer(m, 0, 20_000, 50, 0.5);
    expect(sum(grants)).toBe(1000);
    const r = await m.peek(20_000);
    expect(r.success).toBeGreaterThan(0.4);
    expect(r.success).toBeLessThan(0.6);
  });

  it('admits k x the success ratio of the pool rate when fewer calls succeed: 10% served -> about 20% of 100 calls/s', async () => {
    const m = new Model();
    const grants = await offer(m, 0, 40_000, 100, 0.1);
    // The first seconds go at full rate while the ratio learns; past them, ~20 calls/s.
    const steady = grants.slice(20);
    expect(sum(steady) / steady.length).toBeGreaterThan(12);
    expect(sum(steady) / steady.length).toBeLessThan(28);
    expect((await m.peek(40_000)).state).toBe('throttled');
  });

  it('falls to one probe per probe interval for a dead model, fleet-wide', async () => {
    const m = new Model();
    const grants = await offer(m, 0, 30_000, 100, 0);
    expect(grants[0]).toBeGreaterThan(1);
    // Once it has learnt the model is dead: one call a second, never two.
    for (const n of grants.slice(3)) expect(n).toBeLessThanOrEqual(1);
    expect(sum(grants.slice(3))).toBeGreaterThanOrEqual(26);
    const r = await m.peek(30_000);
    expect(r).toMatchObject({ state: 'open', reason: 'throttle' });
    expect(r.wait).toBeGreaterThan(0);
    expect(r.wait).toBeLessThanOrEqual(1_000);
  });

  it('opens at once on 60 unhealthy outcomes in a row fleet-wide, where the window would take seconds, and never at 50%', async () => {
    const m = new Model();
    // A busy, healthy model: its window is full of successes.
    await offer(m, 0, 10_000, 100, 1);
    for (let i = 0; i < 59; i++) await m.outcome(10_000 + i, 1, 0);
    expect((await m.peek(10_060)).state).toBe('closed');
    await m.outcome(10_060, 1, 0);
    expect(await m.peek(10_061)).toMatchObject({ state: 'open', ratio: 0 });
    // One served call ends the run; the window, still mostly successes, decides again.
    await m.outcome(10_062, 1, 1);
    expect((await m.peek(10_063)).ratio).toBeGreaterThan(0);
    // At 50% the run never gets there.
    const half = new Model();
    await offer(half, 0, 30_000, 100, 0.5);
    expect((await half.peek(30_000)).state).not.toBe('open');
  });

  it('ramps a recovered model back to full rate within seconds, not all at once', async () => {
    const m = new Model();
    await offer(m, 0, 20_000, 100, 0);
    // The provider recovers at 20 s: every call from then on is served.
    const grants = await offer(m, 20_000, 32_000, 100, 1);
    expect(grants[0]).toBeLessThanOrEqual(3);
    const full = grants.findIndex((n) => n >= 99);
    expect(full).toBeGreaterThan(1);
    expect(full).toBeLessThanOrEqual(8);
    // Ramped: each second admits at least as many as the one before, up to full rate.
    for (let i = 1; i <= full; i++) expect(grants[i]!).toBeGreaterThanOrEqual(grants[i - 1]!);
    expect((await m.peek(32_000)).state).toBe('closed');
  });

  it('serves CRITICAL first when it shrinks: a lane with a reserve waits longer for the same token', async () => {
    const m = new Model();
    await offer(m, 0, 20_000, 100, 0.1);
    const critical = await m.peek(20_000, { reserve: 0 });
    const low = await m.peek(20_000, { reserve: 0.4 });
    expect(critical.state).toBe('throttled');
    expect(low.wait).toBeGreaterThan(critical.wait);
  });

  it('forgets a bad spell once it falls out of the window: a model idle for a while is trusted again', async () => {
    const m = new Model();
    await offer(m, 0, 10_000, 100, 0);
    expect((await m.peek(10_000)).state).toBe('open');
    expect(await m.peek(10_000 + 30_000)).toMatchObject({ state: 'closed', wait: 0 });
  });

  it('reads a clock that stepped back as no time passing', async () => {
    const m = new Model();
    await offer(m, 0, 10_000, 100, 0);
    const before = await m.peek(10_000);
    const after = await m.peek(5_000);
    expect(after.success).toBe(before.success);
    expect(after.state).toBe('open');
  });

  it('scales a nominal 60 probes a second when its pool has no requests/min limit, and does not chase its own falling rate down', async () => {
    const m = new Model(undefined, '');
    const grants = await offer(m, 0, 40_000, 100, 0.1);
    const r = await m.peek(40_000);
    expect(r.state).toBe('throttled');
    // k x about 10% of 3,600 calls/min (~720/min, 12 a second, noisy over a 2 s window), held there.
    expect(r.rate).toBeGreaterThanOrEqual(60);
    expect(r.rate).toBeLessThan(1_800);
    expect(sum(grants.slice(20)) / 20).toBeGreaterThan(5);
    expect(sum(grants.slice(20)) / 20).toBeLessThan(25);
  });
});

describe('retry budget', () => {
  it('keeps failed retries within 20% of first calls (plus 1/s) over the window', async () => {
    const m = new Model();
    let firsts = 0;
    let retries = 0;
    // 50 first calls a second, each followed by a retry when the budget allows one, which fails.
    for (let t = 0; t < 30_000; t += 20) {
      if ((await m.acquire(t)).granted) firsts += 1;
      await m.outcome(t, 1, 1);
      if ((await m.acquire(t + 1, { retry: true })).granted) {
        retries += 1;
        await m.outcome(t + 1, 1, 0);
      }
    }
    expect(firsts).toBe(1500);
    // 0.2 x 50/s + 1/s = 11/s over 30 s, plus the first window's floor (10 retries).
    expect(retries).toBeGreaterThan(0.2 * 1500);
    expect(retries).toBeLessThanOrEqual(0.2 * 1500 + 30 + 10 + 1);
  });

  it('lets CRITICAL retry where a lower lane must leave the budget to it, and says for how long', async () => {
    const m = new Model();
    for (let t = 0; t < 10_000; t += 20) await m.acquire(t);
    // Spend retries until a lane leaving 60% of the budget may take no more.
    let t = 10_000;
    while ((await m.peek(t, { retry: true, retryReserve: 0.6 })).wait === 0) await m.acquire(t++, { retry: true });
    const low = await m.peek(t, { retry: true, retryReserve: 0.6 });
    expect(low).toMatchObject({ reason: 'retry_budget' });
    expect(low.wait).toBeGreaterThan(0);
    expect(low.wait).toBeLessThanOrEqual(10_000);
    expect(await m.acquire(t, { retry: true, retryReserve: 0 })).toMatchObject({ granted: true });
    // First calls never wait on the budget.
    expect(await m.peek(t, { retryReserve: 0.6 })).toMatchObject({ wait: 0 });
    // The wait it gives is when the retry fits while first calls go on as lately (50 a second)...
    const later = await m.peek(t, { retry: true, retryReserve: 0.6 });
    expect(later.wait).toBeGreaterThan(0);
    expect(await m.peek(t + later.wait - 50, { retry: true, retryReserve: 0.6 })).toMatchObject({ reason: 'retry_budget' });
    const copy = new Model();
    copy.state = [...m.state];
    let at = t;
    for (; at < t + later.wait; at += 20) await copy.acquire(at);
    expect(await copy.peek(at, { retry: true, retryReserve: 0.6 })).toMatchObject({ wait: 0 });
    // ...and with none at all, it fits within one window.
    expect(await m.peek(t + 10_000, { retry: true, retryReserve: 0.6 })).toMatchObject({ wait: 0 });
  });

  it("keeps the floor every lane's: once first calls stop, the lowest lane still retries about minPerSecond a second", async () => {
    const m = new Model();
    // A busy spell, then no first calls at all (a brownout ended, its retries remain).
    for (let t = 0; t < 10_000; t += 20) await m.acquire(t);
    let granted = 0;
    let t = 30_000;
    for (; t < 60_000; t += 100) if ((await m.acquire(t, { retry: true, retryReserve: 0.9 })).granted) granted += 1;
    // 30 s at a floor of 1/s (10 per 10 s window): about 30, never the two minutes apiece a
    // reserved floor would make it.
    expect(granted).toBeGreaterThanOrEqual(25);
    expect(granted).toBeLessThanOrEqual(10 + 30 + 2);
  });

  it('gives the retry the budget frees next to the higher lane it turned away (its claim), not to whoever asks first', async () => {
    const m = new Model();
    // No first calls: every lane has the floor alone (10 retries a window); spend it.
    for (let i = 0; i < 10; i++) expect(await m.acquire(0, { retry: true, retryReserve: 0.9 })).toMatchObject({ granted: true });
    const critical = await m.acquire(0, { retry: true, retryReserve: 0 });
    expect(critical).toMatchObject({ granted: false, reason: 'retry_budget' });
    // The wait is exact: the retry fits then, not a little later (each early return is an acquire).
    expect(critical.wait).toBeCloseTo(10_000 * Math.log(10 / 9), 0);
    expect(await m.peek(critical.wait - 5, { retry: true, retryReserve: 0 })).toMatchObject({ reason: 'retry_budget' });
    // A LOW retry asking first when that retry frees up is turned away: it is CRITICAL's.
    const low = await m.acquire(critical.wait, { retry: true, retryReserve: 0.9 });
    expect(low).toMatchObject({ granted: false, reason: 'retry_budget' });
    expect(low.wait).toBeGreaterThan(0);
    expect(low.wait).toBeLessThanOrEqual(1_000);
    expect(await m.acquire(critical.wait, { retry: true, retryReserve: 0 })).toMatchObject({ granted: true });
    // First calls are never held by the claim.
    expect(await m.acquire(critical.wait)).toMatchObject({ granted: true });
    // A HIGH retry turned away meanwhile does not take the claim from CRITICAL's lane...
    const t = critical.wait + 10;
    expect(await m.acquire(t, { retry: true, retryReserve: 0.2 })).toMatchObject({ granted: false, reason: 'retry_budget' });
    // ...and once nobody above renews it, the claim lapses within its grace and LOW retries again.
    let at = t;
    while (!(await m.acquire(at, { retry: true, retryReserve: 0.9 })).granted) at += 100;
    expect(at - critical.wait).toBeLessThanOrEqual(1_000 + 2_000);
  });

  it("does not hold an exempt lane's retry while the throttle is closed, and paces it once the throttle binds", async () => {
    const m = new Model();
    for (let i = 0; i < 10; i++) await m.acquire(0, { retry: true, retryReserve: 0.9 });
    expect(await m.acquire(0, { retry: true })).toMatchObject({ granted: false, reason: 'retry_budget' });
    // Closed (nothing failed lately): granted past the budget, and counted in it.
    const exempt = await m.acquire(0, { retry: true, exempt: true });
    expect(exempt).toMatchObject({ granted: true, state: 'closed' });
    expect(exempt.budgetLeft).toBeLessThan(-0.9);
    // A run of 8 unhealthy outcomes (an outage's first second, before the window has fallen):
    // still closed, but the budget holds the exempt lane's retries again.
    await m.outcome(40, 40, 40);
    await m.outcome(50, 8, 0);
    const run = await m.peek(50, { retry: true, exempt: true });
    expect(run).toMatchObject({ state: 'closed', reason: 'retry_budget' });
    // 90% failures: the throttle binds, and the budget paces the exempt lane's retries too.
    await m.outcome(100, 50, 5);
    const paced = await m.peek(100, { retry: true, exempt: true });
    expect(paced.state).not.toBe('closed');
    expect(paced).toMatchObject({ reason: 'retry_budget' });
  });

  it('extends a lane claim with each refusal in that lane and hands it to a higher lane', async () => {
    const m = new Model();
    for (let i = 0; i < 10; i++) await m.acquire(0, { retry: true, retryReserve: 0.9 });
    const high = await m.acquire(0, { retry: true, retryReserve: 0.2 });
    expect(high.reason).toBe('retry_budget');
    // CRITICAL, turned away too, claims over HIGH: a HIGH retry now waits for it like LOW does.
    const critical = await m.acquire(100, { retry: true, retryReserve: 0 });
    expect(critical.reason).toBe('retry_budget');
    const t = 100 + critical.wait;
    expect(await m.acquire(t, { retry: true, retryReserve: 0.2 })).toMatchObject({ granted: false, reason: 'retry_budget' });
    expect(await m.acquire(t, { retry: true, retryReserve: 0 })).toMatchObject({ granted: true });
  });

  it('reads a state written before the claim (eight doubles, a worker not yet upgraded) as no claim', async () => {
    const key = 'throttle-compat';
    const raw = (await db.redis.eval(
      `${INCLUDE}
redis.call('HSET', KEYS[1], 'm', struct.pack('<dddddddd', 1000, 4, 2, 30, 3, 0.5, 1, 0))
local t = readThrottle(KEYS[1], 'm')
local p = throttleParams(1)
local wait = budgetCheck(t, 1000, p, 0.9)
writeThrottle(KEYS[1], 'm', t)
return cjson.encode({ t = t, wait = wait, len = #redis.call('HGET', KEYS[1], 'm') })`,
      1,
      key,
      2,
      2_000,
      1_000,
      0.2,
      10_000,
      1,
    )) as string;
    const out = JSON.parse(raw) as { t: number[]; wait: number; len: number };
    expect(out.t).toEqual([1000, 4, 2, 30, 3, 0.5, 1, 0, 1, 0]);
    expect(out.wait).toBe(0);
    expect(out.len).toBe(80);
  });

  it('does not hold retries the provider serves: after a brownout, a LOW backlog of retries drains at the pace they are served', async () => {
    const m = new Model();
    // A 50% brownout: 50 first calls a second, every other one failing and retried by the lowest
    // lane when the budget allows, its retries failing as often. Then the brownout ends and first
    // calls stop: its retries remain.
    for (let t = 0, i = 0; t < 10_000; t += 20, i++) {
      await m.acquire(t);
      await m.outcome(t, 1, i % 2);
      if (i % 2 === 0 && (await m.acquire(t + 1, { retry: true, retryReserve: 0.9 })).granted) await m.outcome(t + 1, 1, i % 4 === 0 ? 1 : 0, i % 4 === 0 ? 1 : 0);
    }
    const offerRetries = async (model: Model, from: number, served: boolean) => {
      let granted = 0;
      for (let t = from; t < from + 10_000; t += 100) {
        if (!(await model.acquire(t, { retry: true, retryReserve: 0.9 })).granted) continue;
        granted += 1;
        await model.outcome(t, 1, served ? 1 : 0, served ? 1 : 0);
      }
      return granted;
    };
    // Were they still failing, the lowest lane's retries would be held to the floor: about one a second.
    const stillFailing = new Model();
    stillFailing.state = [...m.state];
    expect(await offerRetries(stillFailing, 10_000, false)).toBeLessThanOrEqual(10 + 2);
    // Served, each gives its place back: all 100 offered in 10 s go.
    expect(await offerRetries(m, 10_000, true)).toBe(100);
  });

  it('has a floor: a model with no first calls lately still gets minPerSecond x window retries', async () => {
    const m = new Model();
    let granted = 0;
    for (let i = 0; i < 20; i++) if ((await m.acquire(1_000, { retry: true })).granted) granted += 1;
    expect(granted).toBe(10);
  });
});
