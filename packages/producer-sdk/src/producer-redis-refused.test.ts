/**
 * A Producer whose Redis refuses it (a wrong or missing password, a database Redis does not have)
 * fails its calls `REDIS_REFUSED`, naming the Redis (password masked) and the cause, as the
 * worker, gateway and dashboard do at start: waiting does not fix a configuration mistake, so a
 * caller must be able to tell it from `REDIS_UNAVAILABLE` (Redis down) by its code. It got
 * `REDIS_UNAVAILABLE` with Redis' bare reply, or, once the connection was between retries, only
 * "the connection was lost and is reconnecting".
 */
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { ErrorCode, HeadroomError, Producer, RedisRefusedError, type LlmJobInput } from './index.js';

const servers: EmbeddedRedis[] = [];
const producers: Producer[] = [];
const conns: Redis[] = [];
afterAll(async () => {
  await Promise.all(producers.map((p) => p.close()));
  for (const c of conns) c.disconnect();
  for (const s of servers) await s.stop({ kill: true });
});

const JOB = { priority: 'HIGH', provider: 'anthropic', request: { model: 'claude-sonnet-4-6', max_tokens: 16, messages: [{ role: 'user', content: 'Hi' }] } } as LlmJobInput;

async function server(args: string[] = []): Promise<EmbeddedRedis> {
  const s = await startEmbeddedRedis({ args });
  servers.push(s);
  return s;
}

function producer(redis: string | Redis): Producer {
  const p = new Producer({ redis, connectTimeoutMs: 2_000 });
  producers.push(p);
  return p;
}

/** What each call that needs Redis rejects with, in order: enqueue, run, getJob, cancel. */
async function failuresOf(p: Producer): Promise<unknown[]> {
  const calls = [() => p.enqueue(JOB), () => p.run(JOB, { timeoutMs: 5_000 }), () => p.getJob('high.x'), () => p.cancel('high.x')];
  const out: unknown[] = [];
  for (const call of calls) out.push(await call().then(() => 'resolved', (e: unknown) => e));
  return out;
}

function expectRefused(errors: unknown[], message: RegExp): void {
  for (const err of errors) {
    expect(err).toBeInstanceOf(RedisRefusedError);
    expect(err).toBeInstanceOf(HeadroomError);
    expect((err as RedisRefusedError).code).toBe(ErrorCode.REDIS_REFUSED);
    expect((err as Error).message).toMatch(message);
  }
}

describe('a Producer whose Redis refuses it', () => {
  it('fails every call REDIS_REFUSED on a wrong password, naming the Redis without the password', async () => {
    const r = await server(['--requirepass', 'right-password']);
    const errors = await failuresOf(producer(`redis://:wrong-password@127.0.0.1:${r.port}`));
    expectRefused(errors, new RegExp(`^Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${r.port} refused the connection: WRONGPASS .*\\(check the user and password in the URL\\)$`));
    for (const err of errors) expect((err as Error).message).not.toContain('wrong-password');
    expect(errors[0]).toMatchObject({ url: `redis://:***@127.0.0.1:${r.port}` });
  });

  it('fails every call REDIS_REFUSED when the URL gives no password and Redis requires one', async () => {
    const r = await server(['--requirepass', 'right-password']);
    const errors = await failuresOf(producer(`redis://127.0.0.1:${r.port}`));
    expectRefused(errors, /refused the connection: it requires a password and the URL gives none \(NOAUTH/);
  });

  it('fails every call REDIS_REFUSED on a database Redis does not have', async () => {
    const r = await server();
    const errors = await failuresOf(producer(`redis://127.0.0.1:${r.port}/99`));
    expectRefused(errors, new RegExp(`^Redis at redis://127\\.0\\.0\\.1:${r.port}/99 refused the connection: it cannot select database 99 \\(ERR DB index is out of range\\)`));
  });

  it("says in a result wait's TIMEOUT that Redis refuses it, its cause the refusal", async () => {
    const r = await server(['--requirepass', 'right-password']);
    const p = producer(`redis://:wrong-password@127.0.0.1:${r.port}`);
    // Once the producer has heard the refusal: a wait timing out then says why it heard nothing.
    await p.getJob('high.x').catch(() => undefined);
    const err = await p.handleOf('high.x').result({ timeoutMs: 300 }).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.TIMEOUT, timeoutMs: 300 });
    // It said "(Redis is unavailable: the connection is reconnecting)".
    expect((err as Error).cause).toBeInstanceOf(RedisRefusedError);
    expect((err as Error).message).toMatch(new RegExp(`timed out after 300 ms \\(Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${r.port} refused the connection: WRONGPASS`));
  });

  it('names the Redis of a connection the caller owns, from its options', async () => {
    const r = await server(['--requirepass', 'right-password']);
    const own = new Redis({ host: '127.0.0.1', port: r.port, password: 'wrong-password', enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    own.on('error', () => {});
    conns.push(own);
    const errors = await failuresOf(producer(own));
    expectRefused(errors, new RegExp(`^Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${r.port} refused the connection: WRONGPASS`));
    for (const err of errors) expect((err as Error).message).not.toContain('wrong-password');
  });
});
