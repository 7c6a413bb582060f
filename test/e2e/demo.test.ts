/**
 * The README's main command, as a newcomer runs it: `pnpm demo` with nothing configured (no
 * REDIS_URL, no API keys) starts its own Redis, the simulator, workers, the dashboard and the
 * gateway, drives every lane (and calls through the gateway), and with --check exits 0 only if
 * every lane completed jobs, every gateway call was answered, with zero 429s. Ctrl-C
 * (SIGINT to the whole process group, as a terminal sends it) ends it cleanly.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { Producer } from '@headroom/producer-sdk';
import { freePort, startEmbeddedRedis } from '@headroom/testing';
import { startDemo } from '../support/demo.js';
import { scanKeys } from '../support/probes.js';

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('pnpm demo', () => {
  it('runs headless for 15 s and completes jobs in every lane with zero 429s', async () => {
    const demo = startDemo(['--duration', '15', '--check']);
    const code = await demo.exited;
    const out = demo.output();
    expect(out).toContain('started a private redis-server');
    expect(out).toContain('provider   simulator at');
    expect(out).toMatch(/dashboard {2}http:\/\/127\.0\.0\.1:\d+\/ {2}\(user demo, password \S+\)/);
    expect(out).toMatch(/gateway {4}http:\/\/127\.0\.0\.1:\d+ {2}\(key hr-demo-[0-9a-f]{24}\)/);
    expect(out).toMatch(/gateway: (\d+) of \1 calls answered 200/);
    expect(out, out.slice(-3000)).toContain('check passed: jobs completed in every lane, every call through the gateway answered, zero 429s');
    expect(code).toBe(0);
  }, 120_000);

  it('ends cleanly on Ctrl-C to its whole process group: drains, prints the summary, exits 0, no stack trace', async () => {
    const demo = startDemo(['--duration', '600']);
    try {
      // Running: the fleet is up and the first table (every 5 s without a TTY) is out.
      await until(() => /refused at enqueue: \d+ shed/.test(demo.output()), 90_000);
    } catch (err) {
      process.kill(-demo.child.pid!, 'SIGKILL');
      throw new Error(`the demo never got going:\n${demo.output().slice(-3000)}`, { cause: err });
    }
    const redisUrl = /started a private redis-server at (redis:\/\/\S+)/.exec(demo.output())![1]!;
    // The README's producer quickstart against the running fleet, with what the demo prints for it.
    try {
      const printed = /producer {3}new Producer\(\{ redis: '(\S+)', prefix: '(demo-[0-9a-f]{6})' \}\)/.exec(demo.output());
      expect(printed?.[1], demo.output().slice(0, 3000)).toBe(redisUrl);
      const producer = new Producer({ redis: printed![1]!, prefix: printed![2]! });
      try {
        const result = await producer.run({ priority: 'HIGH', provider: 'anthropic', request: { model: 'claude-sonnet-4-6', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }] } }, { timeoutMs: 60_000 });
        expect(result.usage.outputTokens).toBeGreaterThan(0);
      } finally {
        await producer.close();
      }
    } catch (err) {
      process.kill(-demo.child.pid!, 'SIGKILL');
      throw err;
    }
    process.kill(-demo.child.pid!, 'SIGINT');
    const code = await demo.exited;
    const out = demo.output();
    expect(out, out.slice(-3000)).toContain('interrupted: load stopped; letting the fleet drain');
    expect(out).toMatch(/provider 429s: 0; refused at enqueue: /);
    expect(out).not.toMatch(/MaxRetriesPerRequestError|Error:|\n\s+at /);
    expect(code).toBe(0);
    // Its private Redis went with it.
    const probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => {});
    await expect(probe.connect()).rejects.toThrow();
    probe.disconnect();
  }, 180_000);

  it("on a Redis of yours (REDIS_URL), removes its own keys at exit and leaves every other key", async () => {
    const server = await startEmbeddedRedis();
    const redis = new Redis(server.url);
    try {
      // Another demo's keys, another fleet's, and keys outside any Headroom prefix.
      const others = ['{demo-0a0b0c:critical}:critical:wait', '{hr:fleet}:workers', 'session:42', 'demo-plain'];
      for (const key of others) await redis.set(key, 'kept');
      const demo = startDemo(['--duration', '6'], { REDIS_URL: server.url });
      const code = await demo.exited;
      const out = demo.output();
      const prefix = /the demo's keys go under (demo-[0-9a-f]{6}), removed at exit/.exec(out)?.[1];
      expect(prefix, out.slice(-3000)).toBeDefined();
      // It did write there (the removal is not vacuous), and removed all of it.
      expect(Number(new RegExp(`removed the demo.s (\\d+) keys under ${prefix}`).exec(out)?.[1]), out.slice(-1500)).toBeGreaterThan(0);
      expect(await scanKeys(redis, `{${prefix}:*`)).toEqual([]);
      expect((await scanKeys(redis)).sort()).toEqual([...others].sort());
      expect(code).toBe(0);
    } finally {
      redis.disconnect();
      await server.stop();
    }
  }, 120_000);

  it('on a REDIS_URL nothing answers at, says so and exits 2 before starting anything, with no stack trace', async () => {
    const port = await freePort();
    const demo = startDemo(['--duration', '2'], { REDIS_URL: `redis://127.0.0.1:${port}` });
    const code = await demo.exited;
    const out = demo.output();
    expect(out).toContain(`demo: Redis is unavailable: connect ECONNREFUSED 127.0.0.1:${port}`);
    expect(out).not.toMatch(/^\s+at /m);
    expect(out).not.toMatch(/^(provider|workers|gateway) /m);
    expect(code).toBe(2);
  }, 60_000);
});
