import { Writable } from 'node:stream';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { createRedis } from './connection.js';
import { isConnectionError, reportOutages } from './connection-outages.js';
import { RedisUnavailableError } from './errors.js';
import { createLogger } from './logger.js';

const servers: EmbeddedRedis[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop({ kill: true });
});

function capture() {
  const lines: { msg: string; connection?: string; err?: string }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      cb();
    },
  });
  return { logger: createLogger({ destination, level: 'info' }), lines };
}

/** Resolves once `conn` has emitted `n` more errors (reconnect attempts failing). */
function errors(conn: Redis, n: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const on = () => {
      if (++seen < n) return;
      conn.off('error', on);
      resolve();
    };
    conn.on('error', on);
  });
}

const ready = (conn: Redis) => new Promise<void>((resolve) => conn.once('ready', () => resolve()));

describe('reportOutages', () => {
  it('logs one line when Redis goes away and one when it is back, however many reconnects fail in between', async () => {
    const port = await freePort();
    const first = await startEmbeddedRedis({ port });
    servers.push(first);
    const { logger, lines } = capture();
    const conn = createRedis(first.url, 'worker') as Redis;
    reportOutages(conn, logger, 'main');
    await conn.ping();

    const failing = errors(conn, 5);
    await first.stop({ kill: true });
    await failing;
    expect(lines).toEqual([expect.objectContaining({ msg: 'redis connection lost; reconnecting', connection: 'main', err: expect.stringContaining('ECONNREFUSED') })]);

    const back = ready(conn);
    servers.push(await startEmbeddedRedis({ port }));
    await back;
    expect(lines.map((l) => [l.msg, l.connection])).toEqual([
      ['redis connection lost; reconnecting', 'main'],
      ['redis connection back', 'main'],
    ]);

    // A second outage is a new one: reported again.
    const again = errors(conn, 3);
    await servers.at(-1)!.stop({ kill: true });
    await again;
    expect(lines.map((l) => l.msg)).toEqual(['redis connection lost; reconnecting', 'redis connection back', 'redis connection lost; reconnecting']);
    conn.disconnect();
  });

  it('says once that a connection could not be made (Redis down at start), not that it was lost, and when it is made', async () => {
    const port = await freePort();
    const { logger, lines } = capture();
    const conn = createRedis(`redis://127.0.0.1:${port}`, 'worker') as Redis;
    reportOutages(conn, logger, 'never');
    await errors(conn, 4);
    // It said "redis connection lost; reconnecting" of a connection never made.
    expect(lines).toEqual([expect.objectContaining({ msg: 'redis connection could not be made; retrying', connection: 'never', err: expect.stringContaining('ECONNREFUSED') })]);

    const made = ready(conn);
    const server = await startEmbeddedRedis({ port });
    servers.push(server);
    await made;
    // Once made, losing it is an outage like any other.
    const failing = errors(conn, 3);
    await server.stop({ kill: true });
    await failing;
    conn.disconnect();
    expect(lines.map((l) => l.msg)).toEqual(['redis connection could not be made; retrying', 'redis connection made', 'redis connection lost; reconnecting']);
  });
});

describe('isConnectionError', () => {
  it('knows socket errors and ioredis "not connected" errors from command errors', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED', syscall: 'connect' });
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', syscall: 'read' });
    expect([refused, reset, new Error('Connection is closed.'), new RedisUnavailableError('gone')].map(isConnectionError)).toEqual([true, true, true, true]);
    expect([new Error('ERR unknown command'), new Error('Missing lock for job 1. moveToFinished'), 'ECONNREFUSED'].map(isConnectionError)).toEqual([false, false, false]);
  });
});
