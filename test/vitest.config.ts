import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['@headroom/source'] },
  ssr: { resolve: { conditions: ['@headroom/source'] } },
  test: {
    include: ['e2e/**/*.test.ts', 'bench/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Files start their own redis-server and worker processes: run them one at a time on 2 cores.
    fileParallelism: false,
    // A failed test prints what its fleet processes logged.
    setupFiles: ['support/report-failures.ts'],
  },
});
