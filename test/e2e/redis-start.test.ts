/**
 * `headroom worker`, `gateway` and `dashboard` started against a Redis they cannot use, run as the
 * real commands on private redis-servers:
 * - a Redis that refuses them (a database it does not have, a wrong or missing password, a TLS
 *   certificate that cannot be verified) ends the start with exit 2 and one line naming the Redis
 *   (password masked) and the cause, and nothing is written to database 0. A worker given `/99`
 *   ran on database 0 instead (ioredis goes on after a failed SELECT): it published fleet settings
 *   there and would have taken another fleet's jobs; one given a wrong password waited for ever
 *   (or crashed with a stack and 1), one on an unverifiable certificate for ever;
 * - a worker's probes listen before it touches Redis: during an outage at start `/healthz` answers
 *   (a liveness probe must not restart it) and `/readyz` says 503, where nothing listened until
 *   Redis answered; a metrics port in use exits 2 before the worker writes anything to Redis.
 */
import { createServer, type Server } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { exitOf, spawnHeadroom, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { makeTestCerts, type TestCerts } from '../support/tls-certs.js';
import { until } from '../support/probes.js';

const ENV = { RS_KEY: 'sk-redis-start', RS_GATEWAY_KEY: 'hr-gw-redis-start-0123456789', HEADROOM_DASHBOARD_USER: '', HEADROOM_DASHBOARD_PASSWORD: '', HEADROOM_DASHBOARD_TOKEN: '' };
const procs: FleetProcess[] = [];
const servers: EmbeddedRedis[] = [];
const blockers: Server[] = [];
const certs: TestCerts[] = [];
afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  for (const s of servers) await s.stop({ kill: true });
  for (const b of blockers) b.close();
  for (const c of certs) c.remove();
});

function config(extra: Record<string, unknown> = {}): string {
  return writeConfig({
    redis: { prefix: 'rstart' },
    providers: { anthropic: { baseURL: 'http://127.0.0.1:9', apiKeyEnv: 'RS_KEY' } },
    models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } },
    gateway: { host: '127.0.0.1', keys: { app: { keyEnv: 'RS_GATEWAY_KEY' } } },
    ...extra,
  });
}

async function redisServer(args: string[] = []): Promise<EmbeddedRedis> {
  const s = await startEmbeddedRedis({ args });
  servers.push(s);
  return s;
}

function headroom(args: string[]): FleetProcess {
  const proc = spawnHeadroom(args, ENV);
  procs.push(proc);
  return proc;
}


async function db0Keys(server: EmbeddedRedis, password?: string): Promise<string[]> {
  const reader = new Redis({ host: '127.0.0.1', port: server.port, ...(password ? { password } : {}) });
  try {
    return await reader.keys('*');
  } finally {
    reader.disconnect();
  }
}

const portArgs = async (command: string) => (command === 'worker' ? [] : ['--port', String(await freePort()), ...(command === 'dashboard' ? ['--local-only'] : [])]);

describe.concurrent('a service whose Redis refuses it at start', () => {
  for (const command of ['worker', 'gateway', 'dashboard']) {
    it(`headroom ${command} with a database Redis does not have exits 2, naming it, and writes nothing to database 0`, async () => {
      const r = await redisServer();
      const url = `redis://127.0.0.1:${r.port}/99`;
      const proc = headroom([command, '--config', config(), '--redis', url, ...(await portArgs(command))]);
      expect(await exitOf(proc)).toBe(2);
      expect(proc.output()).toContain(`headroom: Redis at ${url} refused the connection: it cannot select database 99 (ERR DB index is out of range)`);
      expect(proc.output()).not.toMatch(/^\s+at /m);
      expect(await db0Keys(r)).toEqual([]);
    });
  }

  it('headroom worker with a wrong password exits 2 and masks it', async () => {
    const r = await redisServer(['--requirepass', 'right-password']);
    const proc = headroom(['worker', '--config', config(), '--redis', `redis://:wrong-password@127.0.0.1:${r.port}`]);
    expect(await exitOf(proc)).toBe(2);
    expect(proc.output()).toContain(`headroom: Redis at redis://:***@127.0.0.1:${r.port} refused the connection: WRONGPASS`);
    expect(proc.output()).not.toContain('wrong-password');
    expect(await db0Keys(r, 'right-password')).toEqual([]);
  });

  it('headroom worker without the password Redis requires exits 2', async () => {
    const r = await redisServer(['--requirepass', 'right-password']);
    const proc = headroom(['worker', '--config', config(), '--redis', `redis://127.0.0.1:${r.port}`]);
    expect(await exitOf(proc)).toBe(2);
    expect(proc.output()).toContain(`headroom: Redis at redis://127.0.0.1:${r.port} refused the connection: it requires a password and the URL gives none (NOAUTH`);
  });

  it('headroom worker on a TLS Redis whose certificate it cannot verify exits 2', async () => {
    const c = await makeTestCerts();
    certs.push(c);
    const port = await freePort();
    servers.push(await startEmbeddedRedis({ port, args: c.redisArgs(port) }));
    // No NODE_EXTRA_CA_CERTS: the private CA is unknown to this process.
    const proc = headroom(['worker', '--config', config(), '--redis', `rediss://127.0.0.1:${port}`]);
    expect(await exitOf(proc)).toBe(2);
    expect(proc.output()).toContain(`headroom: Redis at rediss://127.0.0.1:${port} refused the connection: TLS: `);
  });
});

describe("a worker's probes", () => {
  it('answer during a Redis outage at start: /healthz 200, /readyz 503; SIGTERM then exits 1 (never reached Redis)', async () => {
    const metricsPort = await freePort();
    const proc = headroom(['worker', '--config', config({ dispatch: { metricsPort } }), '--redis', `redis://127.0.0.1:${await freePort()}`]);
    const healthz = () => fetch(`http://127.0.0.1:${metricsPort}/healthz`).then((r) => r.status, () => 0);
    await until(async () => (await healthz()) !== 0, 60_000, 'the worker answering /healthz with Redis down');
    expect(await healthz()).toBe(200);
    const readyz = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
    expect(readyz.status).toBe(503);
    expect(await readyz.json()).toMatchObject({ alive: true, ready: false });
    proc.child.kill('SIGTERM');
    expect(await exitOf(proc)).toBe(1);
  });

  it('a metrics port in use exits 2, naming dispatch.metricsPort, before the worker writes to Redis', async () => {
    const r = await redisServer();
    const blocker = createServer();
    blockers.push(blocker);
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const metricsPort = (blocker.address() as { port: number }).port;
    const proc = headroom(['worker', '--config', config({ dispatch: { metricsPort } }), '--redis', r.url]);
    expect(await exitOf(proc)).toBe(2);
    expect(proc.output()).toContain(`cannot listen on 127.0.0.1:${metricsPort}: the address is already in use; choose another with dispatch.metricsPort`);
    expect(await db0Keys(r)).toEqual([]);
  });
});
