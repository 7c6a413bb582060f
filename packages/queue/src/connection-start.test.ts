import type { Redis } from 'ioredis';
import { Redis as PlainRedis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { createRedis, duplicateFor } from './connection.js';
import { untilReady } from './connection-start.js';
import { ErrorCode, RedisRefusedError, RedisUnavailableError } from './errors.js';

const servers: EmbeddedRedis[] = [];
const conns: Redis[] = [];
afterAll(async () => {
  for (const c of conns) c.disconnect();
  for (const s of servers) await s.stop({ kill: true });
});

/** A retry delay no test waits for: a wait for the next attempt would outlast the test's timeout. */
const NEXT_ATTEMPT_MS = 600_000;

async function server(opts: Parameters<typeof startEmbeddedRedis>[0] = {}): Promise<EmbeddedRedis> {
  const s = await startEmbeddedRedis(opts);
  servers.push(s);
  return s;
}

function open(url: string, role: 'worker' | 'producer' | 'bucket' = 'worker'): Redis {
  const conn = createRedis(url, role) as Redis;
  conns.push(conn);
  return conn;
}

/** The keys of database 0, read on a connection of its own. */
async function db0Keys(port: number, password?: string): Promise<string[]> {
  const reader = new PlainRedis({ port, host: '127.0.0.1', ...(password ? { password } : {}) });
  try {
    return await reader.keys('*');
  } finally {
    reader.disconnect();
  }
}

/** Resolves once `conn` has failed an attempt and waits for its next one. */
const reconnecting = (conn: Redis) => new Promise<void>((resolve) => conn.once('reconnecting', () => resolve()));

/** Resolves once `conn` has failed `n` more times, or is ready (what the guard must prevent). */
const failures = (conn: Redis, n: number) =>
  new Promise<void>((resolve) => {
    let seen = 0;
    const done = () => {
      conn.off('error', on);
      conn.off('ready', done);
      resolve();
    };
    const on = () => {
      if (++seen >= n) done();
    };
    conn.on('error', on);
    conn.on('ready', done);
  });

describe('a connection whose URL names a database Redis does not have', () => {
  it('is never ready and writes nothing to database 0, whatever its role or duplicates', async () => {
    const r = await server();
    const url = `redis://127.0.0.1:${r.port}/99`;
    const worker = open(url, 'worker');
    const dup = duplicateFor(worker, 'bucket') as Redis;
    const bullDup = worker.duplicate();
    conns.push(dup, bullDup);
    // Queued until ready: without the guard ioredis went ready on database 0 and wrote them there.
    const writes = [worker.set('from-worker', '1'), dup.set('from-duplicate', '1'), bullDup.set('from-bullmq-duplicate', '1')];
    for (const w of writes) w.catch(() => {});
    await Promise.all([failures(worker, 3), failures(dup, 3), failures(bullDup, 3)]);
    expect([worker.status, dup.status, bullDup.status]).not.toContain('ready');
    expect(await db0Keys(r.port)).toEqual([]);
  });

  it('untilReady refuses it with REDIS_REFUSED naming the database', async () => {
    const r = await server();
    const err = await untilReady(open(`redis://127.0.0.1:${r.port}/99`)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect((err as RedisRefusedError).code).toBe(ErrorCode.REDIS_REFUSED);
    expect((err as Error).message).toContain(`Redis at redis://127.0.0.1:${r.port}/99 refused the connection: it cannot select database 99`);
  });

  it('after a reconnect to a Redis that lost the database, waits for it rather than use database 0', async () => {
    const port = await freePort();
    const first = await server({ port });
    const url = `redis://127.0.0.1:${port}/5`;
    const conn = open(url);
    await conn.set('before', '1');
    // The same port, restarted with 2 databases: a SELECT 5 on reconnect is refused.
    await first.stop({ kill: true });
    const second = await server({ port, args: ['--databases', '2'] });
    const pending = conn.set('after', '1');
    pending.catch(() => {});
    await failures(conn, 3);
    expect(conn.status).not.toBe('ready');
    expect(await db0Keys(second.port)).toEqual([]);
  });
});

describe('untilReady', () => {
  it('refuses a wrong password without echoing it', async () => {
    const r = await server({ args: ['--requirepass', 'right-password'] });
    const url = `redis://:wrong-password@127.0.0.1:${r.port}`;
    const err = await untilReady(open(url)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect((err as Error).message).toMatch(new RegExp(`^Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${r.port} refused the connection: WRONGPASS`));
    expect((err as Error).message).not.toContain('wrong-password');
  });

  it('refuses a URL without the password Redis requires', async () => {
    const r = await server({ args: ['--requirepass', 'right-password'] });
    const url = `redis://127.0.0.1:${r.port}`;
    const err = await untilReady(open(url, 'producer')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect((err as Error).message).toContain('it requires a password and the URL gives none (NOAUTH');
  });

  it('waits out a Redis that is down, and is ready once it comes up', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const conn = open(url);
    const contact = untilReady(conn);
    await failures(conn, 2);
    await server({ port });
    await contact;
    expect(conn.status).toBe('ready');
  });

  it('with waitMs, fails REDIS_UNAVAILABLE at the first failure of a Redis that is down, quoting it', async () => {
    const port = await freePort();
    const err = await untilReady(open(`redis://127.0.0.1:${port}`, 'producer'), { waitMs: 60_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisUnavailableError);
    expect((err as Error).message).toBe(`Redis is unavailable: connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  it('between two attempts, refuses at once after a refused attempt, rather than wait for the next one', async () => {
    const r = await server({ args: ['--requirepass', 'right-password'] });
    const conn = createRedis(`redis://:wrong-password@127.0.0.1:${r.port}`, 'producer', { retryStrategy: () => NEXT_ATTEMPT_MS }) as Redis;
    conns.push(conn);
    await reconnecting(conn);
    for (const opts of [{ waitMs: NEXT_ATTEMPT_MS }, {}]) {
      const err = await untilReady(conn, opts).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RedisRefusedError);
      expect((err as RedisRefusedError).reason).toMatch(/^WRONGPASS .*\(check the user and password in the URL\)$/);
    }
  });

  it('between two attempts of a Redis that is down, with waitMs, fails REDIS_UNAVAILABLE at once quoting the last failure', async () => {
    const port = await freePort();
    const conn = createRedis(`redis://127.0.0.1:${port}`, 'producer', { retryStrategy: () => NEXT_ATTEMPT_MS }) as Redis;
    conns.push(conn);
    await reconnecting(conn);
    // It said "the connection was lost and is reconnecting", of a connection never made.
    await expect(untilReady(conn, { waitMs: NEXT_ATTEMPT_MS })).rejects.toThrow(`Redis is unavailable: connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  it('names a connection opened elsewhere from its options, password masked', async () => {
    const r = await server({ args: ['--requirepass', 'right-password'] });
    const conn = new PlainRedis({ host: '127.0.0.1', port: r.port, db: 3, password: 'wrong-password', maxRetriesPerRequest: 1 });
    conn.on('error', () => {});
    conns.push(conn);
    const err = await untilReady(conn).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect((err as RedisRefusedError).url).toBe(`redis://:***@127.0.0.1:${r.port}/3`);
  });

  it('fails REDIS_UNAVAILABLE when its owner closes the connection before it is ready', async () => {
    const conn = open(`redis://127.0.0.1:${await freePort()}`);
    const contact = untilReady(conn).catch((e: unknown) => e);
    await failures(conn, 1);
    conn.disconnect();
    expect(await contact).toBeInstanceOf(RedisUnavailableError);
    expect(await untilReady(conn).catch((e: unknown) => e)).toMatchObject({ code: ErrorCode.REDIS_UNAVAILABLE, message: 'Redis is unavailable: the connection was closed' });
  });
});
