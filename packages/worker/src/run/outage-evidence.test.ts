import { describe, expect, it } from 'vitest';
import { OUTAGE_CALLS, OutageEvidence } from './outage-evidence.js';

const M = 'claude-sonnet-4-6';

describe('OutageEvidence', () => {
  it("takes other jobs' failed calls, from at least two jobs, started after the latest served one, as an outage", () => {
    const e = new OutageEvidence();
    e.record(M, 'old', 100, true);
    for (let i = 0; i < OUTAGE_CALLS - 1; i++) e.record(M, i % 2 ? 'a' : 'b', 200 + i, false);
    expect(e.othersFailing(M, 'me')).toBe(false);
    e.record(M, 'c', 300, false);
    expect(e.othersFailing(M, 'me')).toBe(true);
    // Another model is not touched.
    expect(e.othersFailing('claude-haiku-4-5', 'me')).toBe(false);
  });

  it("is no evidence to a job of its own failures, nor one other job's alone", () => {
    const e = new OutageEvidence();
    for (let i = 0; i < 20; i++) e.record(M, 'me', i, false);
    expect(e.othersFailing(M, 'me')).toBe(false);
    for (let i = 0; i < 20; i++) e.record(M, 'other', 100 + i, false);
    expect(e.othersFailing(M, 'me')).toBe(false);
    expect(e.othersFailing(M, 'third')).toBe(true);
  });

  it('orders by start: a call served that started after the failures ends them, one that started before does not', () => {
    const e = new OutageEvidence();
    for (let i = 0; i < 10; i++) e.record(M, `j${i}`, 1_000 + i, false);
    // A call started before the outage comes back served during it: still an outage.
    e.record(M, 'slow', 900, true);
    expect(e.othersFailing(M, 'me')).toBe(true);
    // One started after the failures is served: the model is back.
    e.record(M, 'fresh', 1_050, true);
    expect(e.othersFailing(M, 'me')).toBe(false);
    // A failure of a call started before that served one says nothing of now.
    for (let i = 0; i < 10; i++) e.record(M, `late${i}`, 1_040, false);
    expect(e.othersFailing(M, 'me')).toBe(false);
  });
});
