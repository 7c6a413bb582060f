/**
 * The single-node URL forms the README documents, end to end (producer in this process, a
 * `headroom worker` process, the simulator): `redis://:password@host` against a server with
 * `requirepass`, `rediss://` against a TLS-only server with a private CA, and
 * `rediss-cluster://` against a 3-master cluster speaking TLS on both its client and bus ports.
 * A wrong password or an unverifiable certificate fails fast with REDIS_UNAVAILABLE.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer, type LlmJobInput } from '@headroom/producer-sdk';
import { createRedis, RedisRefusedError, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { loggedLine, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { startRedisCluster, type RedisCluster } from '../support/redis-cluster.js';
import { makeTestCerts, type TestCerts } from '../support/tls-certs.js';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const MODEL = 'claude-haiku-4-5';
const LIMITS = { rpm: 600, itpm: 400_000, otpm: 100_000 };
const PASSWORD = 's3cret:with@odd/chars';
const KEY_ENV = { URLS_TEST_ANTHROPIC_KEY: 'sk-urls-test' };

let sim: Simulator;
let certs: TestCerts;
const servers: EmbeddedRedis[] = [];
const clusters: RedisCluster[] = [];
const workers: FleetProcess[] = [];
const producers: Producer[] = [];
/** Connections handed to a Producer stay the caller's to close. */
const connections: ReturnType<typeof createRedis>[] = [];
const own = <T extends ReturnType<typeof createRedis>>(conn: T): T => {
  connections.push(conn);
  return conn;
};

beforeAll(async () => {
  sim = await startSimulator({ models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } }, latencyMs: { min: 5, max: 20 } });
  certs = await makeTestCerts();
});

afterAll(async () => {
  await stopAll(workers, 'SIGKILL');
  await Promise.all(producers.map((p) => p.close()));
  for (const c of connections) c.disconnect();
  await Promise.all(servers.map((s) => s.stop({ kill: true })));
  await Promise.all(clusters.map((c) => c.stop()));
  await sim?.close();
  certs?.remove();
});

const config = (prefix: string): string =>
  writeConfig({
    redis: { prefix },
    providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'URLS_TEST_ANTHROPIC_KEY' } },
    models: { [MODEL]: { provider: 'anthropic', limits: LIMITS } },
    dispatch: { concurrency: 4, shutdownGraceMs: 5_000 },
  } satisfies HeadroomConfigInput);

const job = (i: number): LlmJobInput => ({
  priority: 'HIGH',
  provider: 'anthropic',
  request: { model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: `url test ${i}` }] },
});

/** Runs 3 jobs through a worker process on `workerUrl` and a producer on `producerRedis`. */
async function roundTrip(prefix: string, workerUrl: string, producerRedis: ConstructorParameters<typeof Producer>[0]['redis'], env: NodeJS.ProcessEnv = {}) {
  const worker = spawnWorker(config(prefix), workerUrl, `w-${prefix}`, { ...KEY_ENV, HEADROOM_LOG_LEVEL: 'info', ...env });
  workers.push(worker);
  const producer = new Producer({ redis: producerRedis, prefix });
  producers.push(producer);
  // The worker has published the fleet's settings by then: admission refuses until it has.
  await loggedLine(worker, '"msg":"worker started"');
  const results = await Promise.all([1, 2, 3].map((i) => producer.run(job(i), { timeoutMs: 20_000 }).catch((err: Error) => {
    throw new Error(`${err.message}\nworker output:\n${worker.output()}`);
  })));
  expect(results.map((r) => r.model)).toEqual([MODEL, MODEL, MODEL]);
  worker.child.kill('SIGTERM');
  expect(await worker.exited).toBe(0);
}

async function enqueueError(redis: ConstructorParameters<typeof Producer>[0]['redis']): Promise<unknown> {
  const producer = new Producer({ redis, prefix: 'nope', connectTimeoutMs: 3_000 });
  producers.push(producer);
  return producer.enqueue(job(0)).then(() => undefined, (err: unknown) => err);
}

describe('Redis URLs', () => {
  it('redis://:password@host works with requirepass; a wrong password is REDIS_REFUSED (waiting will not fix it) without echoing it', async () => {
    const server = await startEmbeddedRedis({ args: ['--requirepass', PASSWORD] });
    servers.push(server);
    const url = `redis://:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}`;
    await roundTrip('pw', url, url);

    const err = await enqueueError(`redis://:wrong-password@127.0.0.1:${server.port}`);
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect(err).toMatchObject({ code: 'REDIS_REFUSED' });
    expect((err as Error).message).toMatch(/WRONGPASS|NOAUTH/);
    expect((err as Error).message).not.toContain('wrong-password');
  });

  it('rediss:// verifies the server: a private CA via NODE_EXTRA_CA_CERTS (worker) or { tls: { ca } } (producer)', async () => {
    const port = await freePort();
    const server = await startEmbeddedRedis({ port, args: [...certs.redisArgs(port), '--requirepass', PASSWORD] });
    servers.push(server);
    const url = `rediss://:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}`;
    await roundTrip('tls', url, own(createRedis(url, 'producer', { tls: { ca: certs.ca } })), { NODE_EXTRA_CA_CERTS: certs.caFile });

    // Without the CA the certificate cannot be verified, and that is an error, not a fallback.
    const err = await enqueueError(url);
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect((err as Error).message).toMatch(/certificate/i);
  });

  it('rediss-cluster:// runs the path on a TLS cluster (client and bus ports on TLS)', async () => {
    const cluster = await startRedisCluster({
      password: PASSWORD,
      nodeArgs: (port) => [...certs.redisArgs(port), '--tls-cluster', 'yes', '--tls-replication', 'yes'],
      cliArgs: ['--tls', '--cacert', certs.caFile],
    });
    clusters.push(cluster);
    const hosts = cluster.ports.map((p) => `127.0.0.1:${p}`).join(',');
    const url = `rediss-cluster://:${encodeURIComponent(PASSWORD)}@${hosts}`;
    await roundTrip('tlsc', url, own(createRedis(url, 'producer', { tls: { ca: certs.ca } })), { NODE_EXTRA_CA_CERTS: certs.caFile });
  });
});
