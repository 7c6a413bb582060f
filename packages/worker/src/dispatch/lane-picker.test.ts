import { describe, expect, it } from 'vitest';
import { INTERACTIVE_LANES, type InteractiveLane } from '@headroom/queue';
import { LanePicker } from './lane-picker.js';

const WEIGHTS: Record<InteractiveLane, number> = { critical: 5, high: 3, normal: 1, low: 0.1 };

function picker(order: 'strict' | 'weighted') {
  let now = 1_000;
  const p = new LanePicker({ order, lanes: INTERACTIVE_LANES, weights: WEIGHTS, emptyForMs: 50, now: () => now });
  return { p, advance: (ms: number) => { now += ms; } };
}

describe('LanePicker, strict', () => {
  it('offers every lane in priority order', () => {
    expect(picker('strict').p.candidates()).toEqual(['critical', 'high', 'normal', 'low']);
  });

  it('skips a lane marked empty until emptyForMs has passed', () => {
    const { p, advance } = picker('strict');
    p.markEmpty('critical');
    expect(p.candidates()).toEqual(['high', 'normal', 'low']);
    advance(49);
    expect(p.candidates()[0]).toBe('high');
    advance(1);
    expect(p.candidates()[0]).toBe('critical');
  });

  it('refuses a back-off with no end, which would hide the lane for good', () => {
    const { p } = picker('strict');
    expect(() => p.backOff('critical', Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => p.backOff('critical', Number.NaN)).toThrow(/finite/);
    expect(p.candidates()).toEqual(['critical', 'high', 'normal', 'low']);
  });

  it('skips a backed-off lane for the wait and keeps the longer of two back-offs', () => {
    const { p, advance } = picker('strict');
    p.backOff('high', 300);
    p.backOff('high', 100);
    advance(200);
    expect(p.candidates()).not.toContain('high');
    expect(p.msUntilNextOpen()).toBe(0);
    advance(100);
    expect(p.candidates()).toContain('high');
  });

  it('opens a lane closed for every job when work arrives (another pool\'s, or one going to its fallback), once emptyForMs after it closed', () => {
    const { p, advance } = picker('strict');
    p.backOff('high', 800);
    advance(10);
    // Closed 10 ms ago: the marker ends the closure 50 ms after it began, not 800.
    p.wake('high');
    expect(p.candidates()).not.toContain('high');
    expect(p.msUntilTimedOpen()).toBe(40);
    advance(40);
    expect(p.candidates()).toContain('high');
    // Closed again, and work arrives after emptyForMs: open at once.
    p.backOff('high', 800);
    advance(60);
    expect(p.candidates()).not.toContain('high');
    p.wake('high');
    expect(p.candidates()).toContain('high');
    // With no work arriving, the closure lasts its time.
    p.backOff('high', 800);
    advance(799);
    expect(p.candidates()).not.toContain('high');
  });

  it('opens a lane closed only by the fair reserve when work arrives (it may be a fresh tenant\'s) at once, one closed for every job only after emptyForMs', () => {
    const { p, advance } = picker('strict');
    p.backOff('normal', 300, true);
    expect(p.candidates()).not.toContain('normal');
    p.wake('normal');
    expect(p.candidates()).toContain('normal');
    // A closure for every job is not loosened by a fair-share one, and a marker does not end it at once.
    p.backOff('normal', 100);
    p.backOff('normal', 300, true);
    p.wake('normal');
    expect(p.candidates()).not.toContain('normal');
    advance(100);
    expect(p.candidates()).toContain('normal');
    // A fair-share closure after a full one has ended is a fair-share one again.
    p.backOff('normal', 300, true);
    p.backOff('normal', 50, true);
    advance(60);
    expect(p.candidates()).not.toContain('normal');
    p.wake('normal');
    expect(p.candidates()).toContain('normal');
  });

  it("ends a lane's empty mark at once when its marker says work arrived", () => {
    const { p } = picker('strict');
    p.markEmpty('critical');
    p.markEmpty('low');
    p.wake('critical');
    expect(p.candidates()).toEqual(['critical', 'high', 'normal']);
    p.wakeAll();
    expect(p.candidates()).toEqual(['critical', 'high', 'normal', 'low']);
  });

  it('skips the lanes above a woken one for a while: their markers were not set', () => {
    const { p, advance } = picker('strict');
    p.markEmpty('normal');
    p.wakeFromMarker('normal', INTERACTIVE_LANES);
    expect(p.candidates()).toEqual(['normal', 'low']);
    advance(50);
    expect(p.candidates()).toEqual(['critical', 'high', 'normal', 'low']);
  });

  it('bounds a blocking wait by back-offs and due delayed jobs, never by empty marks', () => {
    const { p, advance } = picker('strict');
    for (const lane of INTERACTIVE_LANES) p.markEmpty(lane);
    // Only markers wake an idle worker for empty lanes: nothing is timed.
    expect(p.msUntilTimedOpen()).toBe(Number.POSITIVE_INFINITY);
    expect(p.msUntilNextOpen()).toBe(50);
    p.backOff('normal', 400);
    expect(p.msUntilTimedOpen()).toBe(400);
    p.dueAtTime('low', 1_000 + 30);
    expect(p.msUntilTimedOpen()).toBe(30);
    advance(30);
    // Due: the lane's delayed job is promoted by the next fetch there; the others are still empty.
    expect(p.candidates()).toEqual(['low']);
    expect(p.msUntilTimedOpen()).toBe(370);
  });

  it('opens a due lane no sooner than its back-off ends', () => {
    const { p, advance } = picker('strict');
    p.markEmpty('high');
    p.backOff('high', 300);
    p.dueAtTime('high', 1_000 + 100);
    expect(p.msUntilTimedOpen()).toBe(300);
    advance(100);
    expect(p.candidates()).not.toContain('high');
    advance(200);
    expect(p.candidates()).toContain('high');
  });

  it('says how long until some lane opens when all are closed', () => {
    const { p } = picker('strict');
    for (const lane of INTERACTIVE_LANES) p.backOff(lane, lane === 'normal' ? 40 : 500);
    expect(p.candidates()).toEqual([]);
    expect(p.msUntilNextOpen()).toBe(40);
  });
});

describe('LanePicker, weighted', () => {
  it('gives each lane with work its weight share of first picks (smooth weighted round-robin)', () => {
    const { p } = picker('weighted');
    const firsts = new Map<InteractiveLane, number>();
    // 91 picks is exactly 10 rounds of the weights (5 + 3 + 1 + 0.1 = 9.1).
    for (let i = 0; i < 91; i++) {
      const first = p.candidates()[0]!;
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
    }
    expect(Object.fromEntries(firsts)).toEqual({ critical: 50, high: 30, normal: 10, low: 1 });
  });

  it('interleaves rather than bursting: CRITICAL never takes more than two picks in a row against HIGH', () => {
    const p = new LanePicker({ order: 'weighted', lanes: ['critical', 'high'], weights: WEIGHTS, emptyForMs: 50, now: () => 0 });
    const seq = Array.from({ length: 16 }, () => p.candidates()[0]!).join(',');
    expect(seq).not.toContain('critical,critical,critical');
    expect(seq.split(',').filter((l) => l === 'high')).toHaveLength(6);
  });

  it('still offers the other lanes after the first, so a free slot takes work from any lane that has some', () => {
    const { p } = picker('weighted');
    expect([...p.candidates()].sort()).toEqual([...INTERACTIVE_LANES].sort());
  });
});
