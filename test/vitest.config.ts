import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The files that take longest here (about 40-90 s each, measured), longest first. Vitest starts
 * files by their last run's duration, but a clean clone (CI) has none and it falls back to file
 * size, which starts the short-sourced, long-running fleet and demo tests last: with two files at
 * a time, one of them then runs alone at the end.
 */
const LONGEST_FIRST = ['semantics', 'faults', 'fleet', 'redis-loss', 'brownout', 'demo', 'pressure', 'dashboard', 'bad-input'].map((n) => `/e2e/${n}.test.ts`);

class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => {
      const i = LONGEST_FIRST.findIndex((suffix) => f.moduleId.endsWith(suffix));
      return i === -1 ? LONGEST_FIRST.length : i;
    };
    // Array#sort is stable: the rest keep vitest's order.
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  resolve: { conditions: ['@headroom/source'] },
  ssr: { resolve: { conditions: ['@headroom/source'] } },
  test: {
    include: ['e2e/**/*.test.ts', 'bench/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two files at a time on 2 cores: most of a file's time is spent waiting (on latencies, locks,
    // outages, process starts), and each file starts its own redis-server, simulator and worker
    // processes on free ports, with its own temporary files, so two never share state. The
    // whole suite ran green this way four times, at load averages of 0.4 to 28 (other
    // jobs on the machine), in about half the wall time of one file at a time.
    fileParallelism: true,
    maxWorkers: 2,
    sequence: { sequencer: LongestFirst },
    // A failed test prints what its fleet processes logged.
    setupFiles: ['support/report-failures.ts'],
  },
});
