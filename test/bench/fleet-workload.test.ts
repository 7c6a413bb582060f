import { describe, expect, it } from 'vitest';
import { benchSettings, buildWorkload, requestOf, type JobSpec } from './fleet-workload.js';

const settings = (cachedShare: number) => ({ ...benchSettings(), preload: 200, warmupSec: 5, measureSec: 10, cachedShare });
const meanWords = (jobs: JobSpec[]) => jobs.reduce((t, j) => t + j.words + j.systemWords, 0) / jobs.length;

describe('fleet workload with a cached share', () => {
  it('sends no system block at share 0, so the plain workload is unchanged', () => {
    const w = buildWorkload(settings(0));
    expect(w.arrivals.every((j) => j.systemWords === 0)).toBe(true);
    expect(requestOf(w.arrivals[0]!, 512)).not.toHaveProperty('system');
  });

  it('puts 80% of the mean prompt in one block every job shares, keeping the mean prompt', () => {
    const plain = buildWorkload(settings(0));
    const cached = buildWorkload(settings(0.8));
    const block = cached.arrivals[0]!.systemWords;
    expect(block / meanWords(plain.arrivals)).toBeCloseTo(0.8, 2);
    expect(meanWords(cached.arrivals) / meanWords(plain.arrivals)).toBeCloseTo(1, 2);
    // The same jobs in the same order: only the split differs.
    expect(cached.arrivals.map((j) => [j.seq, j.lane, j.at])).toEqual(plain.arrivals.map((j) => [j.seq, j.lane, j.at]));
  });

  it('sends the same cache_control system block bytes for every job, preload included', () => {
    const w = buildWorkload(settings(0.8));
    const systems = new Set([...w.preload, ...w.arrivals].map((j) => JSON.stringify(requestOf(j, 512).system)));
    expect(systems.size).toBe(1);
    const [block] = requestOf(w.arrivals[0]!, 512).system!;
    expect(block!.cache_control).toEqual({ type: 'ephemeral' });
    expect(requestOf(w.arrivals[0]!, 512).messages[0]!.content).not.toContain(block!.text);
  });
});
