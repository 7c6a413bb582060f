/**
 * The Node process metrics each Headroom process adds to its `/metrics` (prom-client's defaults),
 * scraped from a real worker, gateway and dashboard, each a `headroom` process: named
 * `headroom_process_*` and `headroom_nodejs_*`. They were `headroom_process_process_*` and
 * `headroom_process_nodejs_*`, the prefix doubling a word prom-client's names already carry.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { spawnHeadroom, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { until } from '../support/probes.js';

/** Ports of this file's own. */
const PORTS = { redis: 17_130, worker: 17_131, gatewayMetrics: 17_132, gateway: 17_133, dashboard: 17_134 };
const ENV = { PM_PROVIDER_KEY: 'sk-process-metrics', PM_GATEWAY_KEY: 'hr-gw-process-metrics-0123456789', HEADROOM_DASHBOARD_USER: '', HEADROOM_DASHBOARD_PASSWORD: '', HEADROOM_DASHBOARD_TOKEN: '' };

let redis: EmbeddedRedis;
const procs: FleetProcess[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis({ port: PORTS.redis });
  const config = writeConfig({
    redis: { prefix: 'pm' },
    providers: { anthropic: { apiKeyEnv: 'PM_PROVIDER_KEY' } },
    models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } },
    dispatch: { metricsPort: PORTS.worker, metricsHost: '127.0.0.1' },
    gateway: { host: '127.0.0.1', keys: { app: { keyEnv: 'PM_GATEWAY_KEY' } }, metricsPort: PORTS.gatewayMetrics, metricsHost: '127.0.0.1' },
  });
  procs.push(
    spawnWorker(config, redis.url, 'pm-w1', ENV),
    spawnHeadroom(['gateway', '--config', config, '--redis', redis.url, '--port', String(PORTS.gateway)], ENV),
    spawnHeadroom(['dashboard', '--config', config, '--redis', redis.url, '--local-only', '--port', String(PORTS.dashboard)], ENV),
  );
});
afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  await redis?.stop({ kill: true });
});

/** The metric names a `/metrics` declares (its `# TYPE` lines), once it answers. */
async function namesAt(port: number): Promise<Set<string>> {
  let text = '';
  await until(async () => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
    text = res?.ok ? await res.text() : '';
    return text.length > 0;
  }, 90_000, `/metrics on port ${port}`);
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
}

describe("each process's Node metrics", () => {
  it.each([
    ['worker', PORTS.worker],
    ['gateway', PORTS.gatewayMetrics],
    ['dashboard', PORTS.dashboard],
  ] as const)('the %s names them headroom_process_* and headroom_nodejs_*, no word doubled', async (_kind, port) => {
    const names = await namesAt(port);
    for (const name of ['headroom_process_cpu_seconds_total', 'headroom_process_resident_memory_bytes', 'headroom_process_start_time_seconds', 'headroom_nodejs_heap_size_used_bytes', 'headroom_nodejs_eventloop_lag_seconds', 'headroom_nodejs_version_info']) {
      expect(names, name).toContain(name);
    }
    expect([...names].filter((n) => /^headroom_process_(process|nodejs)_/.test(n) || /^(process|nodejs)_/.test(n))).toEqual([]);
  });
});
