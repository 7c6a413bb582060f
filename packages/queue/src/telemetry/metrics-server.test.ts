import { networkInterfaces } from 'node:os';
import { describe, expect, it } from 'vitest';
import { startMetricsServer } from './metrics-server.js';

/** A registry as the server reads one (prom-client's `Registry` has the same two members). */
const registry = { contentType: 'text/plain; version=0.0.4; charset=utf-8', metrics: async () => '# TYPE headroom_jobs_total counter\nheadroom_jobs_total 3\n' };

const health = () => ({ ready: true, body: { ok: true } });

describe('the metrics server of a worker or gateway', () => {
  it('requires the bearer token for /metrics when one is set, and keeps the probes open', async () => {
    const server = await startMetricsServer({ name: 'worker', port: 0, host: '127.0.0.1', token: 'metrics-token-123', registry, health });
    try {
      const url = `http://127.0.0.1:${server.port}`;
      const anonymous = await fetch(`${url}/metrics`);
      expect(anonymous.status).toBe(401);
      expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED');
      expect((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
      const ok = await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer metrics-token-123' } });
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain('headroom_jobs_total');
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('binds the configured host only: loopback by default is not reachable on another interface', async () => {
    const other = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    const server = await startMetricsServer({ name: 'worker', port: 0, host: '127.0.0.1', token: undefined, registry, health });
    try {
      expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(200);
      if (other) await expect(fetch(`http://${other}:${server.port}/metrics`)).rejects.toThrow();
    } finally {
      await server.close();
    }
  });

  it('with alive, answers /healthz 200 while /readyz says not ready (a liveness probe during a Redis outage)', async () => {
    const notReady = () => ({ ready: false, body: { ready: false } });
    const server = await startMetricsServer({ name: 'worker', port: 0, host: '127.0.0.1', token: undefined, registry, health: notReady, alive: true });
    try {
      expect((await fetch(`http://127.0.0.1:${server.port}/healthz`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${server.port}/readyz`)).status).toBe(503);
    } finally {
      await server.close();
    }
  });
});
