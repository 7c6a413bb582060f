/**
 * The dashboard's first contact with Redis: one that is down is not a reason not to start (it
 * serves, `/readyz` says 503 until Redis is back); one that refuses it (a wrong password, a
 * database it does not have) would refuse every retry, so the start fails `REDIS_REFUSED`,
 * naming the Redis and the cause, before it listens.
 */
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, ErrorCode, parseConfig, RedisRefusedError } from '@headroom/queue';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startDashboard } from './server.js';

const servers: EmbeddedRedis[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop({ kill: true });
});

const config = parseConfig({ redis: { prefix: 'dstart' }, models: { 'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 100 } } } });

function collectingLogger() {
  const messages: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) messages.push((JSON.parse(line) as { msg: string }).msg);
      cb();
    },
  });
  return { logger: createLogger({ destination, level: 'warn' }), messages };
}

describe('startDashboard', () => {
  it('starts while Redis is down, says so, and answers /readyz 503', async () => {
    const { logger, messages } = collectingLogger();
    const dash = await startDashboard({ config, redisUrl: `redis://127.0.0.1:${await freePort()}`, localOnly: true, port: 0, logger });
    try {
      expect(messages).toContain('redis not ready yet; the dashboard starts anyway and /readyz says so');
      const ready = await fetch(`http://127.0.0.1:${dash.port}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ ok: false });
    } finally {
      await dash.close();
    }
  });

  it('fails its start REDIS_REFUSED on a Redis that refuses it, naming it', async () => {
    const r = await startEmbeddedRedis({ args: ['--requirepass', 'right-password'] });
    servers.push(r);
    const { logger } = collectingLogger();
    const err = await startDashboard({ config, redisUrl: `redis://:wrong-password@127.0.0.1:${r.port}`, localOnly: true, port: 0, logger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect(err).toMatchObject({ code: ErrorCode.REDIS_REFUSED, url: `redis://:***@127.0.0.1:${r.port}` });
  });
});
