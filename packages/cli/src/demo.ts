/**
 * `headroom demo`: the whole system on one machine with nothing configured. Starts a private
 * Redis (unless REDIS_URL is set), the provider simulator (unless an API key is set), worker
 * processes, the dashboard and the gateway, then drives a mixed workload — every lane, batch jobs,
 * a runaway tenant, a 529 brownout, calls through the gateway in Anthropic's wire format — and
 * shows the fleet live. Ctrl-C stops everything it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Cluster, Redis } from 'ioredis';
import { createRedis, ErrorCode, HeadroomError, keysUnderPattern, laneKeys, maskUrlPasswords, parseConfig, removeKeysUnder, untilReady, QueueFullError, QuotaExceededError, ShedError, type HeadroomConfigInput, type LlmJobInput } from '@headroom/queue';
import { Producer } from '@headroom/producer-sdk';
import { freePort, REDIS_SERVER_NOT_FOUND, startEmbeddedRedis } from '@headroom/testing';
import { startSimulator, type Simulator, type SimulatorOptions } from '@headroom/simulator';
import { DEMO_GATEWAY_KEY_ENV, demoConfig, demoJob, hasRealKeys, realJobs } from './demo-workload.js';
import { openOverviewReader, type OverviewReader } from '@headroom/dashboard';
import { renderStatus } from './status-view.js';

export interface DemoOptions {
  /** Stop after this many seconds of load (then drain). @default run until Ctrl-C */
  durationSec?: number;
  workers?: number;
  /** Exit 1 unless every lane completed jobs, the provider answered no 429 and (on the simulator) every call through the gateway was answered. */
  check?: boolean;
  env?: NodeJS.ProcessEnv;
  out?: NodeJS.WritableStream;
}


interface Started {
  stop(): Promise<void>;
}

export async function runDemo(opts: DemoOptions = {}): Promise<number> {
  const env = opts.env ?? process.env;
  const out = opts.out ?? process.stdout;
  const say = (line: string) => out.write(`${line}\n`);
  const cleanup: Started[] = [];
  const stopAll = async () => {
    for (const s of cleanup.reverse()) await s.stop().catch(() => {});
    cleanup.length = 0;
  };
  // Ctrl-C reaches the whole foreground process group. The private Redis, the workers and the
  // dashboard run in groups of their own, so the first Ctrl-C (or SIGTERM) only stops the load:
  // the fleet drains, the summary prints, and this process stops them. A second one skips the drain.
  let interrupted = 0;
  const onSignal = () => { interrupted++; };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Should this process die without stopping them (SIGKILL aside), its children go with it.
  const children = new Set<ChildProcess>();
  const killChildren = () => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); };
  process.on('exit', killChildren);

  const prefix = `demo-${randomBytes(3).toString('hex')}`;
  // Set when the demo runs on a Redis it did not start (REDIS_URL): its keys are removed at exit.
  let borrowedRedis: string | undefined;
  try {
    const dir = mkdtempSync(join(tmpdir(), 'headroom-demo-'));
    let redisUrl = env.REDIS_URL;
    if (!redisUrl) {
      const redis = await startEmbeddedRedis({ detached: true }).catch((err: Error & { code?: string }) => {
        // No redis-server installed: say what to do, as any other setup error (exit 2, no stack).
        throw err.code === REDIS_SERVER_NOT_FOUND ? new HeadroomError(ErrorCode.REDIS_UNAVAILABLE, err.message) : err;
      });
      cleanup.push({ stop: () => redis.stop() });
      children.add(redis.process);
      redisUrl = redis.url;
      say(`redis      started a private redis-server at ${redisUrl} (set REDIS_URL to use yours)`);
    } else {
      say(`redis      ${maskUrlPasswords(redisUrl)}: the demo's keys go under ${prefix}, removed at exit`);
    }
    // Through createRedis, as every other connection: a `redis-cluster://` REDIS_URL is one the
    // fleet takes, and a plain ioredis client here could not parse it. A Redis that does not answer
    // ends the demo with its reason (exit 2) before anything is started on it.
    const statusRedis = createRedis(redisUrl, 'producer');
    statusRedis.on('error', () => {}); // a read that fails says so through its own promise
    cleanup.push({ stop: async () => statusRedis.disconnect() });
    await untilReady(statusRedis, { waitMs: 10_000 });
    // Only a Redis that answered can hold keys of the demo's to remove.
    if (env.REDIS_URL) borrowedRedis = redisUrl;

    const real = hasRealKeys(env);
    let sim: Simulator | undefined;
    if (!real) {
      sim = await startSimulator({ models: demoSimModels(), latencyMs: { min: 40, max: 250 }, batchCompletionMs: 4_000 });
      const s = sim;
      cleanup.push({ stop: () => s.close() });
      say(`provider   simulator at ${sim.url} (set ANTHROPIC_API_KEY or OPENAI_API_KEY for real calls)`);
    } else {
      say('provider   real APIs (API keys found): a few small requests only');
    }

    const dashboardPort = await freePort();
    const gatewayPort = await freePort();
    const configInput: HeadroomConfigInput = demoConfig({ prefix, simUrl: sim?.url, dashboardPort, gatewayPort });
    if (real) {
      // Only the providers whose key is set: a worker refuses models it has no key for.
      const keyed = (p: string) => Boolean(env[p === 'anthropic' ? 'ANTHROPIC_API_KEY' : 'OPENAI_API_KEY']);
      configInput.models = Object.fromEntries(Object.entries(configInput.models).filter(([, m]) => keyed(m.provider)).map(([n, m]) => [n, { ...m, fallback: (m.fallback ?? []).filter((f) => keyed(configInput.models[f]!.provider)) }]));
    }
    const config = parseConfig(configInput, 'demo config');
    const configFile = join(dir, 'headroom.config.yaml');
    writeFileSync(configFile, JSON.stringify(configInput, null, 2));
    const log = createWriteStream(join(dir, 'fleet.log'));
    const password = randomBytes(9).toString('base64url');
    const gatewayKey = `hr-demo-${randomBytes(12).toString('hex')}`;
    const childEnv = {
      ...env,
      [DEMO_GATEWAY_KEY_ENV]: gatewayKey,
      HEADROOM_DEMO_KEY: 'sk-demo-simulated',
      HEADROOM_DASHBOARD_USER: 'demo',
      HEADROOM_DASHBOARD_PASSWORD: password,
      HEADROOM_LOG_LEVEL: env.HEADROOM_LOG_LEVEL ?? 'info',
    };
    const spawnCli = (args: string[]): ChildProcess => {
      // The same runtime this process runs on (built JS, or the sources through tsx).
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      children.add(child);
      child.stdout?.pipe(log, { end: false });
      child.stderr?.pipe(log, { end: false });
      cleanup.push({ stop: () => stopChild(child) });
      return child;
    };
    const workerCount = opts.workers ?? 3;
    for (let i = 1; i <= workerCount; i++) spawnCli(['worker', '--config', configFile, '--redis', redisUrl, '--id', `demo-w${i}`]);
    spawnCli(['dashboard', '--config', configFile, '--redis', redisUrl, '--local-only']);
    spawnCli(['gateway', '--config', configFile, '--redis', redisUrl]);
    const gateway = new DemoGateway(`http://127.0.0.1:${gatewayPort}`, gatewayKey);
    say(`workers    ${workerCount} processes; logs in ${join(dir, 'fleet.log')}`);
    say(`dashboard  http://127.0.0.1:${dashboardPort}/  (user demo, password ${password}); Bull Board at /admin/queues`);
    say(`gateway    ${gateway.url}  (key ${gatewayKey}): an official SDK's baseURL (OpenAI's with /v1), e.g.`);
    say(`           curl ${gateway.url}/v1/messages -H 'x-api-key: ${gatewayKey}' -H 'anthropic-version: 2023-06-01' \\`);
    say(`             -H 'content-type: application/json' -H 'headroom-priority: critical' -d '${JSON.stringify(GATEWAY_CALL)}'`);
    // The README's producer quickstart against this fleet: its keys are not under the default 'hr'.
    say(`producer   new Producer({ redis: '${maskUrlPasswords(redisUrl)}', prefix: '${prefix}' })  (@headroom/producer-sdk, the README's quickstart)`);
    say('');

    const producer = new Producer({ redis: redisUrl, prefix });
    cleanup.push({ stop: () => producer.close() });
    const status = openOverviewReader(statusRedis, config);
    cleanup.push({ stop: () => status.close() });
    // Workers publish the fleet's models and caps as they start; wait for the first.
    await waitForFleet(statusRedis, prefix);
    if (!(await gateway.ready())) say(`gateway    did not start at ${gateway.url} (see the fleet log); the demo goes on without it`);

    const refused = { shed: 0, full: 0, quota: 0 };
    const offer = async (job: LlmJobInput) => {
      try {
        await producer.enqueue(job);
      } catch (err) {
        if (err instanceof ShedError) refused.shed++;
        else if (err instanceof QueueFullError) refused.full++;
        else if (err instanceof QuotaExceededError) refused.quota++;
        else throw err;
      }
    };

    const started = Date.now();
    const durationMs = real ? 0 : (opts.durationSec ?? Number.POSITIVE_INFINITY) * 1000;
    let lastTable = 0;
    let brownout = false;
    let runaway = false;
    if (real) for (const job of realJobs(config)) await offer(job);
    let i = 0;
    while (!interrupted && Date.now() - started < durationMs) {
      const elapsed = Date.now() - started;
      await offer(demoJob(i++));
      if (!runaway && elapsed > 4_000) {
        runaway = true;
        // A runaway tenant: far past its tokens/min and queued-jobs quotas.
        for (let r = 0; r < 60; r++) await offer(demoJob(i++, { tenant: 'runaway', priority: 'NORMAL' }));
      }
      // A service of another language would call like this: the provider's wire format, a CRITICAL lane.
      if (sim && i % 25 === 0) gateway.call();
      if (sim && !brownout && elapsed > Math.min(8_000, durationMs * 0.4)) {
        brownout = true;
        // A brownout: the primary model answers 529 for a while; the fallback ladder takes over.
        sim.injectFaults({ model: 'claude-sonnet-4-6', status: 529, count: 40 });
      }
      if (Date.now() - lastTable > (out === process.stdout && process.stdout.isTTY ? 1_000 : 5_000)) {
        lastTable = Date.now();
        await showTable(status, out, refused);
      }
      await new Promise((r) => setTimeout(r, 80));
    }

    say(interrupted ? '\ninterrupted: load stopped; letting the fleet drain (Ctrl-C again to skip)...' : '\nload stopped; letting the fleet drain...');
    const drainUntil = Date.now() + (real ? 60_000 : 25_000);
    const seen = interrupted;
    while (interrupted === seen && Date.now() < drainUntil) {
      const o = await status.read();
      if (o.lanes.every((l) => l.queued + l.running === 0)) break;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    const final = await status.read();
    await showTable(status, out, refused);
    const calls429 = sim ? Object.values(sim.stats().models).reduce((n, m) => n + m.refused429, 0) : final.calls.calls429;
    const viaGateway = await gateway.settled();
    say(`\nprovider 429s: ${calls429}; refused at enqueue: ${refused.shed} shed, ${refused.quota} over tenant quota, ${refused.full} lane full`);
    if (sim) say(`gateway: ${viaGateway.answered} of ${viaGateway.sent} calls answered 200${viaGateway.answered > 0 ? `, lane wait p50 ${viaGateway.waitP50Ms} ms` : ''}${viaGateway.errors.length ? `; ${viaGateway.errors.slice(0, 3).join(', ')}` : ''}`);
    // Stopped by Ctrl-C or SIGTERM is how a demo ends: a clean stop, status 0.
    if (!opts.check) return 0;
    const lanesWithoutWork = final.lanes.filter((l) => l.done === 0 && (l.lane !== 'batch' || config.batch.enabled)).map((l) => l.lane);
    const gatewayFailed = sim !== undefined && (viaGateway.answered === 0 || viaGateway.errors.length > 0);
    if (lanesWithoutWork.length > 0 || calls429 > 0 || gatewayFailed) {
      say(`check failed: ${lanesWithoutWork.length ? `no completed jobs in ${lanesWithoutWork.join(', ')}` : ''}${calls429 ? ` ${calls429} provider 429s` : ''}${gatewayFailed ? ' calls through the gateway not all answered' : ''}`);
      return 1;
    }
    say(`check passed: jobs completed in every lane${sim ? ', every call through the gateway answered' : ''}, zero 429s`);
    return 0;
  } catch (err) {
    if (err instanceof HeadroomError) {
      say(`demo: ${err.message}`);
      return 2;
    }
    throw err;
  } finally {
    await stopAll();
    // After every process that writes under the prefix has stopped, or one would write again.
    if (borrowedRedis !== undefined) await removeDemoKeys(borrowedRedis, prefix, say);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', killChildren);
  }
}

/** What the demo sends through its gateway, as any service's Anthropic SDK would. */
const GATEWAY_CALL = { model: 'claude-sonnet-4-6', max_tokens: 64, messages: [{ role: 'user', content: 'Say hello through the gateway.' }] };

/** The demo's calls through its gateway: plain HTTP in Anthropic's format, what any language sends. */
class DemoGateway {
  #sent = 0;
  readonly #waits: number[] = [];
  readonly #errors: string[] = [];
  readonly #pending = new Set<Promise<void>>();
  #up = false;

  constructor(
    readonly url: string,
    private readonly key: string,
  ) {}

  /** Waits (up to 30 s) until the gateway listens: it starts beside the workers. */
  async ready(): Promise<boolean> {
    for (let i = 0; i < 300 && !this.#up; i++) {
      this.#up = await fetch(`${this.url}/healthz`).then((r) => r.ok, () => false);
      if (!this.#up) await new Promise((r) => setTimeout(r, 100));
    }
    return this.#up;
  }

  call(): void {
    if (!this.#up) return;
    this.#sent++;
    const headers = { 'x-api-key': this.key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', 'headroom-priority': 'critical' };
    const done = fetch(`${this.url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify(GATEWAY_CALL) }).then(
      async (res) => {
        await res.arrayBuffer();
        if (res.ok) this.#waits.push(Number(res.headers.get('headroom-wait-ms')));
        else this.#errors.push(`HTTP ${res.status}`);
      },
      (err: Error) => { this.#errors.push(err.message); },
    );
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
  }

  async settled(): Promise<{ sent: number; answered: number; waitP50Ms: number; errors: string[] }> {
    await Promise.all(this.#pending);
    const sorted = [...this.#waits].sort((a, b) => a - b);
    return { sent: this.#sent, answered: sorted.length, waitP50Ms: sorted[Math.floor(sorted.length / 2)] ?? 0, errors: this.#errors };
  }
}

async function showTable(status: OverviewReader, out: NodeJS.WritableStream, refused: { shed: number; full: number; quota: number }): Promise<void> {
  const table = renderStatus(await status.read());
  const clear = out === process.stdout && process.stdout.isTTY ? '\x1b[2J\x1b[H' : '\n';
  out.write(`${clear}${table}\nrefused at enqueue: ${refused.shed} shed, ${refused.quota} tenant quota, ${refused.full} lane full\n`);
}

async function waitForFleet(redis: Redis | Cluster, prefix: string): Promise<void> {
  const key = laneKeys(prefix, 'critical').models;
  for (let i = 0; i < 300 && !(await redis.exists(key)); i++) await new Promise((r) => setTimeout(r, 100));
}

/**
 * Leaves someone else's Redis as the demo found it: the fleet's keys, most with no TTL, stayed
 * behind otherwise (136 of them after a short run). A failure is said, not thrown: the demo's
 * own outcome stands.
 */
async function removeDemoKeys(redisUrl: string, prefix: string, say: (line: string) => void): Promise<void> {
  const conn = createRedis(redisUrl, 'producer');
  conn.on('error', () => {}); // a failed command says so through its own promise
  try {
    await untilReady(conn, { waitMs: 5_000 });
    const removed = await removeKeysUnder(conn, prefix);
    say(`redis      removed the demo's ${removed} keys under ${prefix}`);
  } catch (err) {
    say(`redis      could not remove the demo's keys under ${prefix} (${maskUrlPasswords((err as Error).message)}): remove the keys matching ${keysUnderPattern(prefix)} by hand`);
  } finally {
    conn.disconnect();
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => { clearTimeout(timer); resolve(); });
    child.kill('SIGTERM');
  });
}

/** The simulator enforces the same limits the demo fleet is configured with. */
function demoSimModels(): NonNullable<SimulatorOptions['models']> {
  const models = demoConfig({ prefix: 'x', simUrl: 'http://127.0.0.1', dashboardPort: 1, gatewayPort: 1 }).models;
  return Object.fromEntries(Object.entries(models).map(([name, m]) => [name, { provider: m.provider, limits: { rpm: m.limits?.rpm ?? 1000, ...m.limits } }]));
}
