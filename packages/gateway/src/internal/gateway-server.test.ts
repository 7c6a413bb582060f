/**
 * The gateway's first contact with Redis: one that is down is not a reason not to start (its
 * answers say Redis is away until it is back); one that refuses it (a wrong password, a database
 * it does not have) would refuse every retry, so the start fails `REDIS_REFUSED`, naming the
 * Redis and the cause, before it listens. And its stop never waits on a Redis that stalls.
 */
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger, createRedis, ErrorCode, fleetKeys, type HeadroomError, parseConfig, RedisRefusedError, within } from '@headroom/queue';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startGateway } from './gateway-server.js';

const servers: EmbeddedRedis[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop({ kill: true });
});

const KEY = 'hr-gateway-start-0123456789';
const configInput = {
  redis: { prefix: 'gstart' },
  models: { 'claude-haiku-4-5': { provider: 'anthropic' as const, limits: { rpm: 100 } } },
  gateway: { host: '127.0.0.1', port: 0, keys: { app: { keyEnv: 'GSTART_KEY' } } },
};
const config = parseConfig(configInput);
const start = (redisUrl: string) => startGateway({ config, redisUrl, env: { GSTART_KEY: KEY }, logger: createLogger({ level: 'silent' }) });

/** A logger whose lines (as parsed JSON) land in `lines`. */
function capturing(): { logger: ReturnType<typeof createLogger>; lines: { level: number; msg: string; maxBodyBytes?: number; maxJobBytes?: number }[] } {
  const lines: { level: number; msg: string }[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as { level: number; msg: string });
      done();
    },
  });
  return { logger: createLogger({ level: 'warn', destination }), lines };
}

describe('startGateway', () => {
  it('warns at start when gateway.maxBodyBytes is above limits.maxJobBytes, naming both and what to raise', async () => {
    const warnedOf = async (gateway: { maxBodyBytes: number }, limits: { maxJobBytes: number } | undefined) => {
      const { logger, lines } = capturing();
      const raised = parseConfig({ ...configInput, gateway: { ...configInput.gateway, ...gateway }, ...(limits ? { limits } : {}) });
      const running = await startGateway({ config: raised, redisUrl: `redis://127.0.0.1:${await freePort()}`, env: { GSTART_KEY: KEY }, logger });
      await running.close();
      return lines.filter((l) => l.msg.includes('maxBodyBytes'));
    };
    const [warning, ...more] = await warnedOf({ maxBodyBytes: 10 * 1024 * 1024 }, undefined);
    expect(more).toEqual([]);
    expect(warning).toMatchObject({ level: 40, maxBodyBytes: 10 * 1024 * 1024, maxJobBytes: 1024 * 1024 });
    expect(warning?.msg).toContain('gateway.maxBodyBytes (10485760) is above limits.maxJobBytes (1048576)');
    expect(warning?.msg).toContain('PAYLOAD_TOO_LARGE');
    expect(warning?.msg).toContain('raise limits.maxJobBytes');
    // Both raised together: nothing to say.
    expect(await warnedOf({ maxBodyBytes: 10 * 1024 * 1024 }, { maxJobBytes: 10 * 1024 * 1024 })).toEqual([]);
  });

  it('refuses a malformed Redis URL in the words the worker and the dashboard use, not echoing it', async () => {
    // It was the Producer's option check: "invalid config (Producer options): redis: ...", naming
    // an option the operator of `headroom gateway --redis` never wrote.
    const refused = await start('redis://:hunter2-pw@127.0.0.1:notaport').then(
      () => undefined,
      (err: unknown) => err as HeadroomError,
    );
    expect(refused?.code).toBe(ErrorCode.CONFIG_INVALID);
    expect(refused?.message).toMatch(/^invalid Redis URL: /);
    expect(refused?.message).not.toContain('hunter2-pw');
  });

  it('starts while Redis is down and answers that Redis is away', async () => {
    const gateway = await start(`redis://127.0.0.1:${await freePort()}`);
    try {
      const res = await fetch(`${gateway.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: 'Hi' }] }),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('headroom-error-code')).toBe('REDIS_UNAVAILABLE');
      await res.arrayBuffer();
    } finally {
      await gateway.close();
    }
  });

  it('stops while Redis is connected but does not answer (a failover, a black hole), rather than wait on it', async () => {
    const r = await startEmbeddedRedis();
    servers.push(r);
    const gateway = await start(r.url);
    const probe = createRedis(r.url, 'producer');
    try {
      // Beating: its stop has an entry to remove, on a connection that then gets no answer.
      await expect.poll(() => probe.hexists(fleetKeys('gstart').gateways, gateway.id), { timeout: 10_000 }).toBe(1);
      r.process.kill('SIGSTOP');
      // Far past the stop's bound on Redis: a stop held by the stall never resolves.
      expect(await within(gateway.close(), 30_000)).toBe(true);
    } finally {
      r.process.kill('SIGCONT');
      probe.disconnect();
    }
  });

  it('fails its start REDIS_REFUSED on a Redis that refuses it, naming it', async () => {
    const r = await startEmbeddedRedis();
    servers.push(r);
    const err = await start(`redis://127.0.0.1:${r.port}/99`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect(err).toMatchObject({ code: ErrorCode.REDIS_REFUSED, url: `redis://127.0.0.1:${r.port}/99` });
  });
});
