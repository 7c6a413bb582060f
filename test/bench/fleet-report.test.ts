import type { AdmissionRecord, SimulatorStats } from '@headroom/simulator';
import { describe, expect, it } from 'vitest';
import { figuresOf, type ModeRun } from './fleet-report.js';
import { MODEL } from './fleet-workload.js';

const ITPM = 60_000; // 1,000 tokens a second: the arithmetic below stays readable.

function stats(admissions: AdmissionRecord[], cacheCreationTokens = 0): SimulatorStats {
  return {
    since: 0,
    requestsByPath: {},
    models: { [MODEL]: { admitted: admissions.length, refused429: 0, faultsInjected: {}, inputTokens: 0, outputTokens: 0, cacheReadTokens: 0, cacheCreationTokens, clientClosed: 0 } },
    batches: { anthropic: { created: 0, requests: 0, succeeded: 0, errored: 0, expired: 0, canceled: 0 }, openai: { created: 0, requests: 0, succeeded: 0, errored: 0, expired: 0, canceled: 0 } },
    batchesByModel: {},
    admissions,
    admissionsDropped: 0,
  };
}

const call = (t: number, input: number, cacheRead: number): AdmissionRecord => ({
  t, model: MODEL, pool: MODEL, key: 'k', input, output: 10, cacheRead, done: true, streamed: false, clientClosed: false, outputSent: 10,
});

function run(admissions: AdmissionRecord[]): ModeRun {
  const s = stats(admissions);
  return { name: 'm', limits: { rpm: 1e6, itpm: ITPM, otpm: 1e9 }, window: { from: 60_000, to: 70_000 }, simAtStart: s, simAtEnd: s, simFinal: s, jobs: [], lowBacklog: [], drainMs: 0, notes: [] };
}

describe('fleet report, prompt-cache figures', () => {
  it('counts cache reads in prompt goodput and judges it against ITPM / (1 - hit rate)', () => {
    // One call a second draws exactly the refill (1,000 uncached tokens) and reads 4,000 from the
    // cache: hit rate 80%, ideal 5 x ITPM, and the bucket's level ends where it started.
    const log = Array.from({ length: 10 }, (_, i) => call(60_000 + i * 1000, 1000, 4000));
    const { cache } = figuresOf(run(log));
    expect(cache.hitRate).toBeCloseTo(0.8, 6);
    expect(cache.idealPerMin).toBeCloseTo(5 * ITPM, 3);
    expect(cache.promptPerMin).toBeCloseTo(5 * ITPM, 3);
    expect(cache.ratio).toBeCloseTo(1, 2);
    expect(cache.drawn).toBeCloseTo(0, 2);
  });

  it('shows an excess over the ideal as what the window drew from the bucket', () => {
    // Twice the uncached size: the refill pays half, the bucket's level (full at the start) the rest.
    const log = Array.from({ length: 10 }, (_, i) => call(60_000 + i * 1000, 2000, 8000));
    const f = figuresOf(run(log));
    expect(f.cache.ratio).toBeCloseTo(2, 2);
    expect(f.cache.drawn).toBeCloseTo(1, 1);
    expect(f.cache.ratio).toBeCloseTo(1 - f.unusedRefill + f.cache.drawn, 2);
  });
});
