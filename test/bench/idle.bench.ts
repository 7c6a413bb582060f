/**
 * `pnpm bench:idle`: what an idle fleet costs Redis. Two workers and a gateway (the e2e gateway
 * fleet's config: four pools, two providers) on a private Redis and the simulator, no traffic at
 * all. After the fleet settles, it counts the commands Redis runs over a window with
 * `INFO commandstats` (commands inside scripts included, as Redis counts them), and with MONITOR
 * how many of them the clients sent (what a service billed per request counts), by command and
 * by key.
 *
 * Env: IDLE_BENCH_SECONDS (the window, default 20), IDLE_BENCH_SETTLE_SECONDS (default 10),
 * IDLE_BENCH_WORKERS (default 2).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import { freePort, startEmbeddedRedis } from '@headroom/testing';
import { REPO_ROOT, spawnHeadroom, spawnTsx, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';

const SECONDS = Number(process.env.IDLE_BENCH_SECONDS ?? 20);
const SETTLE_SECONDS = Number(process.env.IDLE_BENCH_SETTLE_SECONDS ?? 10);
const WORKERS = Number(process.env.IDLE_BENCH_WORKERS ?? 2);
const ENV = { BENCH_PROVIDER_KEY: 'sk-idle-bench-provider-key', BENCH_GATEWAY_KEY: 'hr-idle-bench-key-0123456789ab', HEADROOM_LOG_LEVEL: 'error' };
const ANTHROPIC_LIMITS = { rpm: 60_000, itpm: 40_000_000, otpm: 10_000_000 };
const OPENAI_LIMITS = { rpm: 60_000, tpm: 40_000_000 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const up = (url: string) => fetch(url).then(() => true, () => false);

/** Calls per command since Redis started, scripts' own commands included. */
async function commandStats(redis: Redis): Promise<Map<string, number>> {
  return new Map([...(await redis.info('commandstats')).matchAll(/cmdstat_([^:]+):calls=(\d+)/g)].map((m) => [m[1] as string, Number(m[2])]));
}

/** A key with its job ids, minutes and hex shas left out, so one sender's keys group together. */
const shape = (key: string) => key.replace(/\d{6,}/g, '<n>').replace(/[0-9a-f]{40}/g, '<sha>');

const redis = await startEmbeddedRedis();
const procs: FleetProcess[] = [];
const [simPort, gatewayPort] = [await freePort(), await freePort()];
const simUrl = `http://127.0.0.1:${simPort}`;
const sim = spawnTsx(join(REPO_ROOT, 'packages/simulator/src/cli.ts'), ['--port', String(simPort)]);
try {
  await until('the simulator', () => up(`${simUrl}/_sim/stats`));
  const config = writeConfig({
    redis: { prefix: 'idlebench' },
    providers: {
      anthropic: { baseURL: simUrl, apiKeyEnv: 'BENCH_PROVIDER_KEY' },
      openai: { baseURL: `${simUrl}/v1`, apiKeyEnv: 'BENCH_PROVIDER_KEY' },
    },
    models: {
      'claude-sonnet-4-6': { provider: 'anthropic', limits: ANTHROPIC_LIMITS },
      'claude-haiku-4-5': { provider: 'anthropic', limits: ANTHROPIC_LIMITS },
      'gpt-4.1': { provider: 'openai', limits: OPENAI_LIMITS },
      'gpt-4.1-mini': { provider: 'openai', limits: OPENAI_LIMITS },
    },
    gateway: { host: '127.0.0.1', keys: { bench: { keyEnv: 'BENCH_GATEWAY_KEY' } } },
  });
  for (let i = 1; i <= WORKERS; i++) procs.push(spawnWorker(config, redis.url, `idle-w${i}`, ENV));
  procs.push(spawnHeadroom(['gateway', '--config', config, '--redis', redis.url, '--port', String(gatewayPort)], ENV));
  const stats = new Redis(redis.url);
  await until('the gateway', () => up(`http://127.0.0.1:${gatewayPort}/healthz`));
  // Every worker's lanes registered (BullMQ names its lane connections `<queue>:w:<worker id>`).
  await until('the workers', async () => (await stats.client('LIST') as string).split('\n').filter((l) => / name=\S*:w:idle-w\d+ /.test(l)).length >= WORKERS * 4);
  console.log(`idle fleet bench: ${WORKERS} workers + 1 gateway, no traffic; settle ${SETTLE_SECONDS} s, then a ${SECONDS} s window`);
  await sleep(SETTLE_SECONDS * 1000);

  const sent = new Map<string, number>();
  const inScripts = new Map<string, number>();
  let lastScript = '';
  /** The window, in Redis time (seconds), as MONITOR stamps each command. */
  const span = { from: Number.POSITIVE_INFINITY, to: Number.POSITIVE_INFINITY };
  // redis-cli's MONITOR, not ioredis': with commands arriving from the fleet as MONITOR answers,
  // one read may carry its OK and a monitored command, which ioredis takes for a reply to nothing.
  const monitor = spawn('redis-cli', ['-p', String(redis.port), 'MONITOR'], { stdio: ['ignore', 'pipe', 'inherit'] });
  createInterface({ input: monitor.stdout }).on('line', (line) => {
    const m = /^([\d.]+) \[\d+ ([^\]]+)\] (.*)$/.exec(line);
    if (!m || Number(m[1]) < span.from || Number(m[1]) > span.to) return;
    const [, , source, rest] = m as unknown as [string, string, string, string];
    const args = [...rest.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((a) => a[1] as string);
    const name = String(args[0]).toLowerCase();
    if (source === 'lua') {
      inScripts.set(lastScript, (inScripts.get(lastScript) ?? 0) + 1);
      return;
    }
    if (name === 'info') return;
    const isScript = name === 'evalsha' || name === 'eval';
    // A script by its first key, which names what it works on.
    const what = `${name} ${shape((isScript ? args[3] : args[1]) ?? '')}`;
    if (isScript) lastScript = what;
    sent.set(what, (sent.get(what) ?? 0) + 1);
  });
  await sleep(500);
  const redisTime = async () => { const [s, us] = await stats.time(); return Number(s) + Number(us) / 1e6; };
  const before = await commandStats(stats);
  span.from = await redisTime();
  await sleep(SECONDS * 1000);
  span.to = await redisTime();
  const after = await commandStats(stats);
  await sleep(500); // MONITOR's last lines
  monitor.kill('SIGTERM');
  stats.disconnect();

  // The window's own INFO and MONITOR are not the fleet's (its two TIMEs are left in: 0.1/s).
  const ours = new Set(['info', 'monitor']);
  const byCommand = [...after].map(([name, calls]) => [name, calls - (before.get(name) ?? 0)] as const).filter(([name, n]) => n > 0 && !ours.has(name));
  const total = byCommand.reduce((a, [, n]) => a + n, 0);
  const sentTotal = [...sent.values()].reduce((a, b) => a + b, 0);
  const rate = (n: number) => (n / SECONDS).toFixed(1);
  console.log(`\nidle fleet: Redis commands/s ${rate(total)} (INFO commandstats, inside scripts included), ${rate(sentTotal)} sent by the clients (MONITOR)`);
  console.log(`  by command: ${byCommand.sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} ${rate(n)}`).join(', ')}`);
  console.log('  sent, by command and first key (/s, + commands inside the script):');
  for (const [what, n] of [...sent].sort((a, b) => b[1] - a[1])) {
    const inner = inScripts.get(what);
    console.log(`    ${rate(n).padStart(6)}  ${what}${inner ? `  (+${rate(inner)} inside)` : ''}`);
  }
} finally {
  await stopAll(procs);
  sim.kill('SIGTERM');
  await redis.stop();
}
process.exit(0);
