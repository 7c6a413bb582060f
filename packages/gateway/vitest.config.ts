import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['@headroom/source'] },
  ssr: { resolve: { conditions: ['@headroom/source'] } },
  test: { include: ['src/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 30_000, passWithNoTests: false },
});
