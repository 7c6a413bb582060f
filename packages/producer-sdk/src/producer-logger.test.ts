/**
 * The producer's `logger` option: a Redis outage is one warn line when it starts and one info line
 * when it ends, whatever the producers sharing the connection, the connections reading results
 * and the reconnect attempts in between; without a logger nothing reaches the console.
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createRedis, parseConfig, publishFleetSettings, type LoggerLike } from '@headroom/queue';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { Producer, type LlmJobInput } from './index.js';

const servers: EmbeddedRedis[] = [];
const probes: Redis[] = [];
afterAll(async () => {
  for (const p of probes) p.disconnect();
  for (const s of servers) await s.stop({ kill: true });
});

const JOB = { priority: 'HIGH', provider: 'anthropic', request: { model: 'claude-sonnet-4-6', max_tokens: 16, messages: [{ role: 'user', content: 'Hi' }] } } as LlmJobInput;

/** A redis-server on `port` with a fleet's settings published under `hr`, as a running fleet keeps them. */
async function fleetRedis(port: number): Promise<EmbeddedRedis> {
  const server = await startEmbeddedRedis({ port });
  servers.push(server);
  const admin = new Redis(server.url);
  await publishFleetSettings(admin, parseConfig({ models: { 'claude-sonnet-4-6': { provider: 'anthropic' } } }));
  admin.disconnect();
  return server;
}

/** A logger that keeps (level, fields, message) and resolves `when(pred)` as lines arrive. */
function collectingLogger() {
  const lines: { level: 'warn' | 'info' | 'error'; msg: string; fields: Record<string, unknown> }[] = [];
  const waiters: (() => void)[] = [];
  const at = (level: 'warn' | 'info' | 'error') => (fields: object, msg: string) => {
    lines.push({ level, msg, fields: fields as Record<string, unknown> });
    for (const w of waiters.splice(0)) w();
  };
  const logger: LoggerLike = { warn: at('warn'), info: at('info'), error: at('error') };
  const when = (pred: () => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => (pred() ? resolve() : waiters.push(check));
      check();
    });
  return { logger, lines, when };
}

/**
 * Resolves once a connection of the test's own to `url` has failed `n` reconnects: the producer's
 * connections, on the same dead server, have been retrying as long.
 */
function reconnectsFailed(url: string): { probe: Redis; failed: (n: number) => Promise<void> } {
  const probe = new Redis(url, { retryStrategy: (times) => Math.min(50 * times, 500) });
  probes.push(probe);
  let count = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  probe.on('error', () => {
    count++;
    for (const w of waiters.filter((x) => count >= x.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  return { probe, failed: (n) => new Promise<void>((resolve) => waiters.push({ n: count + n, resolve })) };
}

describe('Producer logger', () => {
  it('logs one line when Redis goes and one when it is back, for two producers sharing the connection and the logger', async () => {
    const port = await freePort();
    const server = await fleetRedis(port);
    const { logger, lines, when } = collectingLogger();
    const a = new Producer({ redis: server.url, logger });
    const b = new Producer({ redis: server.url, logger });
    try {
      // A result waited on: the producer's readers hold connections of their own too.
      const handle = await a.enqueue(JOB);
      const waited = handle.result({ timeoutMs: 600_000 }).catch((err: unknown) => err);
      await b.enqueue(JOB);
      const { probe, failed } = reconnectsFailed(server.url);
      await probe.ping();

      const retrying = failed(6);
      await server.stop({ kill: true });
      await retrying;
      expect(lines).toEqual([{ level: 'warn', msg: 'redis connection lost; reconnecting', fields: { connection: 'producer', err: expect.stringContaining('ECONNREFUSED') } }]);

      await fleetRedis(port);
      await when(() => lines.some((l) => l.msg === 'redis connection back'));
      // Back: calls succeed again, and nothing more was logged on the way.
      await a.enqueue(JOB);
      expect(lines.map((l) => [l.level, l.msg, l.fields.connection])).toEqual([
        ['warn', 'redis connection lost; reconnecting', 'producer'],
        ['info', 'redis connection back', 'producer'],
      ]);
      await a.cancel(handle.id);
      await waited;
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('stops logging once closed, while the connection it shared lives on', async () => {
    const port = await freePort();
    const server = await fleetRedis(port);
    const { logger, lines } = collectingLogger();
    const quiet = new Producer({ redis: server.url });
    const logged = new Producer({ redis: server.url, logger });
    try {
      await logged.enqueue(JOB);
      await logged.close();
      const { probe, failed } = reconnectsFailed(server.url);
      await probe.ping();
      const retrying = failed(4);
      await server.stop({ kill: true });
      await retrying;
      expect(lines).toEqual([]);
    } finally {
      await quiet.close();
    }
  });

  it('without a logger prints nothing during an outage: no ioredis "Unhandled error event"', async () => {
    const port = await freePort();
    const server = await fleetRedis(port);
    const printed: string[] = [];
    const keep = (...args: unknown[]) => {
      printed.push(args.map(String).join(' '));
    };
    const spies = [vi.spyOn(console, 'error').mockImplementation(keep), vi.spyOn(console, 'warn').mockImplementation(keep), vi.spyOn(console, 'log').mockImplementation(keep)];
    // A connection of the test's own, to see it back (a 'ready' listener does not hide errors).
    const conn = createRedis(server.url, 'producer');
    const p = new Producer({ redis: conn });
    try {
      const handle = await p.enqueue(JOB);
      const waited = handle.result({ timeoutMs: 600_000 }).catch((err: unknown) => err);
      const { probe, failed } = reconnectsFailed(server.url);
      await probe.ping();
      const retrying = failed(6);
      await server.stop({ kill: true });
      await retrying;
      const back = new Promise((resolve) => conn.once('ready', resolve));
      await fleetRedis(port);
      await back;
      await p.enqueue(JOB);
      await p.cancel(handle.id);
      await waited;
      expect(printed).toEqual([]);
    } finally {
      for (const s of spies) s.mockRestore();
      await p.close();
      conn.disconnect();
    }
  });
});
