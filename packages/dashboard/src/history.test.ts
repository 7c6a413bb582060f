import { describe, expect, it } from 'vitest';
import { History, exhaustInMs, type Sample } from './history.js';

const sample = (atMs: number, level: number, capacity = 60_000): Sample => ({
  atMs,
  pools: { p: { itpm: { level, capacity, utilization: (capacity - level) / capacity } } },
  lanes: {},
});

describe('History', () => {
  it('measures the burn gross of refill: a steady draw at the refill rate keeps the level flat', () => {
    const h = new History({ drainWindowMs: 30_000 });
    // 60k/min refills 1000/s; drawing exactly that keeps the level at 40k.
    for (let t = 0; t <= 30_000; t += 2_000) h.record(sample(t, 40_000));
    expect(h.burnPerSec('p', 'itpm')).toBeCloseTo(1000, 6);
    expect(h.fallingNow('p', 'itpm')).toBe(false);
  });

  it('counts no refill above capacity: a full, idle bucket burns nothing', () => {
    const h = new History();
    for (let t = 0; t <= 10_000; t += 2_000) h.record(sample(t, 60_000));
    expect(h.burnPerSec('p', 'itpm')).toBeCloseTo(0, 6);
  });

  it('averages over the window and ignores samples older than it', () => {
    const h = new History({ drainWindowMs: 10_000 });
    h.record(sample(0, 60_000));
    h.record(sample(2_000, 0)); // a burst long ago, outside the window at the end
    for (let t = 20_000; t <= 30_000; t += 2_000) h.record(sample(t, 50_000 - (t - 20_000) / 2));
    // Falling 500/s net while refilling 1000/s: drawing 1500/s.
    expect(h.burnPerSec('p', 'itpm')).toBeCloseTo(1500, 6);
    expect(h.fallingNow('p', 'itpm')).toBe(true);
  });

  it('is null with fewer than two readings, and per dimension', () => {
    const h = new History();
    expect(h.burnPerSec('p', 'itpm')).toBeNull();
    h.record(sample(0, 10_000));
    expect(h.burnPerSec('p', 'itpm')).toBeNull();
    h.record(sample(10_000, 20_000));
    expect(h.burnPerSec('p', 'itpm')).toBeCloseTo(0, 6);
    expect(h.burnPerSec('p', 'rpm')).toBeNull();
  });

  it('keeps keepMs of samples and drops out-of-order ones', () => {
    const h = new History({ keepMs: 60_000 });
    for (let t = 0; t <= 120_000; t += 10_000) h.record(sample(t, 1));
    h.record(sample(115_000, 1));
    expect(h.samples().map((s) => s.atMs)).toEqual([60_000, 70_000, 80_000, 90_000, 100_000, 110_000, 120_000]);
    expect(h.samples(100_001).map((s) => s.atMs)).toEqual([110_000, 120_000]);
  });
});

describe('exhaustInMs', () => {
  it('is level / (burn - refill) while falling', () => {
    // 60k/min refills 1000/s; burning 1500/s nets 500/s: 10k lasts 20 s.
    expect(exhaustInMs(10_000, 1_000, 1_500, true)).toBe(20_000);
  });

  it('is 0 when empty, null when not falling now or when the burn does not outrun the refill', () => {
    expect(exhaustInMs(0, 1_000, 1_500, true)).toBe(0);
    expect(exhaustInMs(-50, 1_000, null, false)).toBe(0);
    // A burst averaged into the window, but the level is rising again.
    expect(exhaustInMs(10_000, 1_000, 1_500, false)).toBeNull();
    expect(exhaustInMs(10_000, 1_000, 1_000, true)).toBeNull();
    expect(exhaustInMs(10_000, 1_000, null, true)).toBeNull();
  });
});
