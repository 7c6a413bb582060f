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

  it('skips a backed-off lane for the wait, keeps the longer of two back-offs, and wakes it at once', () => {
    const { p, advance } = picker('strict');
    p.backOff('high', 300);
    p.backOff('high', 100);
    advance(200);
    expect(p.candidates()).not.toContain('high');
    expect(p.msUntilNextOpen()).toBe(0);
    p.wake('high');
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
