
import { describe, expect, it } from 'vitest';
import { allFairShareOnly, fairShareOnly, laneKeys } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { PoolHolds } from '../run/pool-holds.js';
import { MAX_BACKOFF_MS, PoolBackoffs } from './pool-backoff.js';

const db = redisForFile();
let seq = 0;


/** Two workers of one fleet, on one clock the test moves. */
function fleet() {
  const prefix = `backoff${++seq}`;
  const clock = { now: 1_700_000_000_000 };
  const now = () => clock.now;
  return { prefix, clock, a: new PoolBackoffs(db.redis, prefix, now), b: new PoolBackoffs(db.redis, prefix, now) };
}

describe('PoolBackoffs', () => {
  it('backs a pool off in one lane at once here, and in the others only after they refresh', async () => {
    const { a, b } = fleet();
    await a.backOff('normal', 'sonnet-4', 400);
    expect(a.backedOff('normal')).toEqual(['sonnet-4']);
    expect(a.backedOff('high')).toEqual([]);
    expect(b.backedOff('normal')).toEqual([]);
    await b.refresh();
    expect(b.backedOff('normal')).toEqual(['sonnet-4']);
    expect(b.msUntilFirstReopens('normal')).toBe(400);
  });

  it("keeps the bucket's whole wait beside the one-second backoff, here and fleet-wide, for a job that may fall back", async () => {
    const { a, b, clock } = fleet();
    await a.backOff('normal', 'sonnet-4', 30_000);
    expect(a.msUntilFirstReopens('normal')).toBe(MAX_BACKOFF_MS);
    expect(a.waitEnds('normal')).toEqual(new Map([['sonnet-4', clock.now + 30_000]]));
    await b.refresh();
    // Learnt as a wait, not as a pool backed off (`@sonnet-4` names none).
    expect(b.backedOff('normal')).toEqual(['sonnet-4']);
    expect(b.waitEnds('normal')).toEqual(new Map([['sonnet-4', clock.now + 30_000]]));
    // The pool's pace (the refill of one job's draw) goes with it, fleet-wide; unknown, the last learnt stays.
    await a.backOff('normal', 'sonnet-4', 30_000, false, 500);
    await a.backOff('normal', 'sonnet-4', 30_000);
    expect(a.paces('normal')).toEqual(new Map([['sonnet-4', 500]]));
    clock.now += 100;
    await b.refresh();
    expect(b.paces('normal')).toEqual(new Map([['sonnet-4', 500]]));
    clock.now -= 100;
    // A fair-share wait holds back only queued-up tenants: no wait to fall back from.
    await a.backOff('high', 'haiku-4', 30_000, true);
    expect(a.waitEnds('high').size).toBe(0);
    clock.now += 30_001;
    expect(a.waitEnds('normal').size).toBe(0);
  });

  it('backs a pool off for queued-up tenants only (~pool) after a fair-share wait, here and fleet-wide', async () => {
    const { a, b } = fleet();
    await a.backOff('normal', 'sonnet-4', 20, true);
    expect(a.backedOff('normal')).toEqual([fairShareOnly('sonnet-4')]);
    expect(allFairShareOnly(a.backedOff('normal'))).toBe(true);
    await b.refresh();
    expect(b.backedOff('normal')).toEqual(['~sonnet-4']);
    await a.backOff('normal', 'haiku-4', 20);
    expect(allFairShareOnly(a.backedOff('normal'))).toBe(false);
  });

  it("backs off a pool this worker's job sleeps in place for, in that job's lane only and here only, until the sleeper lets go", async () => {
    const prefix = `backoff${++seq}`;
    const clock = { now: 1_700_000_000_000 };
    const holds = new PoolHolds();
    const here = new PoolBackoffs(db.redis, prefix, () => clock.now, holds);
    const other = new PoolBackoffs(db.redis, prefix, () => clock.now);
    holds.take('sonnet-4', 'normal', clock.now + 20);
    expect(here.backedOff('normal')).toEqual(['sonnet-4']);
    expect(here.backedOff('high')).toEqual([]);
    expect(here.msUntilFirstReopens('normal')).toBe(20);
    await other.refresh();
    expect(other.backedOff('normal')).toEqual([]);
    // Past its sleep end it still holds the pool until its acquire has answered.
    clock.now += 30;
    expect(here.backedOff('normal')).toEqual(['sonnet-4']);
    expect(here.msUntilFirstReopens('normal')).toBe(1);
    holds.release('sonnet-4');
    expect(here.backedOff('normal')).toEqual([]);
  });

  it('says "look again at once" when nothing holds the lane any more, never an endless wait', async () => {
    const prefix = `backoff${++seq}`;
    const clock = { now: 1_700_000_000_000 };
    const holds = new PoolHolds();
    const here = new PoolBackoffs(db.redis, prefix, () => clock.now, holds);
    // The dispatcher reads backedOff, makes a round trip, then asks when the lane reopens: the
    // sleeper's acquire may have answered meanwhile, releasing the only hold.
    holds.take('sonnet-4', 'critical', clock.now + 20);
    expect(here.backedOff('critical')).toEqual(['sonnet-4']);
    holds.release('sonnet-4');
    expect(here.msUntilFirstReopens('critical')).toBe(1);
    expect(here.msUntilFirstReopens('high')).toBe(1);
  });

  it('never backs off longer than a second, whatever the bucket said, and the key outlives no back-off', async () => {
    const { prefix, a } = fleet();
    await a.backOff('low', 'gpt-4.1', 90_000);
    expect(a.msUntilFirstReopens('low')).toBe(MAX_BACKOFF_MS);
    const ttl = await db.redis.pttl(laneKeys(prefix, 'low').poolBackoff);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2 * MAX_BACKOFF_MS);
  });

  it('keeps the longer of two back-offs, fleet-wide', async () => {
    const { a, b } = fleet();
    await a.backOff('high', 'haiku', 800);
    await b.backOff('high', 'haiku', 100);
    await b.refresh();
    expect(b.msUntilFirstReopens('high')).toBe(800);
  });

  it('drops a back-off once it has passed', async () => {
    const { clock, a } = fleet();
    await a.backOff('critical', 'opus', 300);
    clock.now += 300;
    expect(a.backedOff('critical')).toEqual([]);
  });

  it('reads the fleet at most every 100 ms', async () => {
    const { clock, a, b } = fleet();
    await b.refresh();
    await a.backOff('normal', 'sonnet-4', 500);
    await b.refresh();
    expect(b.backedOff('normal')).toEqual([]);
    clock.now += 100;
    await b.refresh();
    expect(b.backedOff('normal')).toEqual(['sonnet-4']);
  });

  it('holds a back-off learnt from a worker whose clock runs ahead to a second from now', async () => {
    const prefix = `backoff${++seq}`;
    const ahead = new PoolBackoffs(db.redis, prefix, () => 1_700_000_060_000);
    const here = new PoolBackoffs(db.redis, prefix, () => 1_700_000_000_000);
    await ahead.backOff('normal', 'sonnet-4', 1_000);
    await here.refresh();
    expect(here.msUntilFirstReopens('normal')).toBe(MAX_BACKOFF_MS);
  });
});
