/**
 * A dashboard on a `redis-server` of its own, for the tests that act on that Redis (stop it,
 * write to its lanes through Bull Board). Not part of the package (excluded from its build).
 */
import { createLogger, parseConfig, type HeadroomConfigInput } from '@headroom/queue';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startDashboard, type RunningDashboard } from './server.js';

export interface DashboardOnRedis {
  redis: EmbeddedRedis;
  dash: RunningDashboard;
  close(): Promise<void>;
}

/** Local-only (no credentials), on a free port, silent. */
export async function dashboardOnOwnRedis(config: HeadroomConfigInput): Promise<DashboardOnRedis> {
  const redis = await startEmbeddedRedis();
  const dash = await startDashboard({ config: parseConfig(config), redisUrl: redis.url, localOnly: true, port: 0, logger: createLogger({ level: 'silent' }) });
  return {
    redis,
    dash,
    close: async () => {
      // A test may leave it stopped (SIGSTOP): let it answer the dashboard's stop first.
      redis.process.kill('SIGCONT');
      await dash.close();
      await redis.stop({ kill: true });
    },
  };
}
