import { describe, expect, it } from 'vitest';
import type { DimensionSnapshot } from './bucket.js';
import { capacityOf, computePressure } from './pressure.js';

const dim = (dimension: DimensionSnapshot['dimension'], level: number, capacity: number): DimensionSnapshot => ({
  dimension, level, capacity, ratePerSec: capacity / 60, source: 'config', fullInMs: 0,
});
const base = { models: ['m'], meanNeed: { itpm: 1000 }, horizonMs: 60_000 };

describe('computePressure', () => {
  it('is zero for a full bucket with no backlog', () => {
    const p = computePressure({ ...base, snapshot: { dimensions: [dim('rpm', 100, 100)], cooldowns: [] }, backlogJobs: 0 });
    expect(p.value).toBe(0);
  });

  it('does not shed a busy pool whose backlog drains quickly', () => {
    // Bucket drawn down, but 10 queued jobs drain in 10 s at 60 rpm: well inside the horizon.
    const p = computePressure({ ...base, snapshot: { dimensions: [dim('rpm', 0, 60)], cooldowns: [] }, backlogJobs: 10 });
    expect(p.utilization).toBe(1);
    expect(p.drainMs).toBeCloseTo(10_000, 0);
    expect(p.value).toBeCloseTo(10 / 60, 5);
  });

  it('reaches 1 when the bucket is empty and the backlog outlasts the horizon', () => {
    const p = computePressure({ ...base, meanNeed: { itpm: 2000 }, snapshot: { dimensions: [dim('rpm', 0, 60), dim('itpm', 0, 60_000)], cooldowns: [] }, backlogJobs: 200 });
    expect(p.value).toBe(1);
    expect(p.binding).toBe('itpm');
  });

  it('measures utilization against what the shed lane may draw', () => {
    // LOW (reserve 0.4) alone keeps the bucket at 40%: for LOW that bucket is fully used.
    const snapshot = { dimensions: [dim('rpm', 24, 60)], cooldowns: [] };
    const p = computePressure({ ...base, snapshot, backlogJobs: 500, reserve: 0.4 });
    expect(p.utilization).toBeCloseTo(1, 5);
    expect(p.value).toBe(1);
    expect(computePressure({ ...base, snapshot, backlogJobs: 500 }).value).toBeCloseTo(0.6, 5);
  });

  it('sheds when the lane front is past its max wait though the drain estimate looks short', () => {
    const snapshot = { dimensions: [dim('rpm', 20, 60)], cooldowns: [] };
    const calm = computePressure({ ...base, snapshot, backlogJobs: 5, reserve: 0.4, oldestWaitMs: 10_000, maxWaitMs: 60_000 });
    expect(calm.value).toBeLessThan(0.85);
    const late = computePressure({ ...base, snapshot, backlogJobs: 5, reserve: 0.4, oldestWaitMs: 90_000, maxWaitMs: 60_000 });
    expect(late.value).toBe(1);
    // An idle bucket never sheds, however old a job is (it will run at once).
    const idle = computePressure({ ...base, snapshot: { dimensions: [dim('rpm', 60, 60)], cooldowns: [] }, backlogJobs: 5, reserve: 0.4, oldestWaitMs: 90_000, maxWaitMs: 60_000 });
    expect(idle.value).toBe(0);
  });

  it('counts capacity lost to a brownout as used: LOW sheds as under a quota squeeze', () => {
    // A full bucket of 600 requests, 500 jobs queued: the bucket holds them all, calm.
    const snapshot = { dimensions: [dim('rpm', 600, 600)], cooldowns: [] };
    const calm = computePressure({ ...base, snapshot, backlogJobs: 500, reserve: 0.4 });
    expect(calm.value).toBe(0);
    // Half the calls served: the level and the refill count half (200 jobs over 5/s: 40 s).
    const half = computePressure({ ...base, snapshot, backlogJobs: 500, reserve: 0.4, capacityFactor: capacityOf(['m'], [{ model: 'm', admitRatio: 1, successRatio: 0.5 }]) });
    expect(half.utilization).toBeCloseTo(0.5 / 0.6, 5);
    expect(half.drainMs).toBeCloseTo(40_000, 0);
    expect(half.value).toBeCloseTo(40 / 60, 5);
    // A dead model: nothing drains, full pressure.
    const dead = computePressure({ ...base, snapshot, backlogJobs: 500, reserve: 0.4, capacityFactor: 0 });
    expect(dead.value).toBe(1);
    // Nothing queued: nothing to shed, whatever the model's health.
    expect(computePressure({ ...base, snapshot, backlogJobs: 0, capacityFactor: 0 }).drainMs).toBe(0);
    // A model with no throttle state counts as serving everything.
    expect(capacityOf(['m', 'n'], [{ model: 'm', admitRatio: 0.2, successRatio: 0.1 }])).toBeCloseTo((0.02 + 1) / 2, 9);
  });

  it('counts a cooling model in proportion to its pool', () => {
    const snapshot = { dimensions: [dim('rpm', 100, 100)], cooldowns: [{ model: 'a', untilMs: 0, remainingMs: 5_000 }] };
    expect(computePressure({ ...base, models: ['a', 'b'], snapshot, backlogJobs: 0 }).value).toBe(0.5);
    expect(computePressure({ ...base, models: ['a'], snapshot, backlogJobs: 0 }).value).toBe(1);
  });
});
