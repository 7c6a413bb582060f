/**
 * `headroom status --watch` redraws until it is stopped, and Ctrl-C (SIGINT) or SIGTERM is how it
 * stops: it exits 0 then, as a service stopped by them does (docs/operations.md#exit-codes). The
 * signal killed it (130 or 143 in a shell, a failure to a script that runs it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { exitOf, spawnHeadroom, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { until } from '../support/probes.js';

const procs: FleetProcess[] = [];
let redis: EmbeddedRedis;
beforeAll(async () => {
  redis = await startEmbeddedRedis();
});
afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  await redis?.stop({ kill: true });
});

const config = writeConfig({ redis: { prefix: 'stw' }, models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } } });

describe('headroom status --watch', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('exits 0 on %s, after its last table', async (signal) => {
    const proc = spawnHeadroom(['status', '--config', config, '--redis', redis.url, '--watch']);
    procs.push(proc);
    await until(() => proc.output().includes('last 5 min: calls'), 60_000, 'the first table');
    proc.child.kill(signal);
    expect(await exitOf(proc, 30_000)).toBe(0);
    expect(proc.output().trimEnd().split('\n').at(-1)).toMatch(/^last 5 min: calls /);
  });
});
