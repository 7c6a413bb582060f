/**
 * The `headroom` command: `headroom worker`, `headroom dashboard`, `headroom gateway`, `headroom status`, `headroom demo`.
 * Each command imports its own package when it runs, so a worker process never loads express or
 * Bull Board, and a dashboard never loads the provider SDKs.
 */
import { resolve } from 'node:path';
import { ReplyError } from 'ioredis';
import { asRedisError, ConfigError, createRedis, HeadroomError, loadConfig, logLevelOf, maskUrlPasswords, RedisRefusedError, RedisUnavailableError, redisUrlOf, untilReady, type HeadroomConfig } from '@headroom/queue';
import type { OverviewReader } from '@headroom/dashboard';
import { parseCommandLine } from './args.js';
import { checkReasons } from './status-check.js';
import { renderStatus, renderUnreachable } from './status-view.js';

/**
 * Exit codes beside 0 (docs/operations.md#exit-codes): 1 a worker's stop Redis did not answer, a
 * `--check` that failed (`demo`, `status`), or a crash; 2 bad input (config, flags, URL); 3
 * `headroom status` could not read Redis.
 */
const EXIT_CHECK_FAILED = 1;
const EXIT_REDIS_UNREADABLE = 3;

/**
 * What Redis said, when `err` came from Redis (unreachable, closed, refused the command) rather
 * than from this code: status then prints that in one line, and a bug still gets its stack.
 */
function redisFailureOf(err: unknown): string | undefined {
  const mapped = asRedisError(err);
  // The line names the Redis already: the refusal's own words and what to check follow it.
  if (mapped instanceof RedisRefusedError) return `refused the connection: ${mapped.reason}`;
  if (mapped instanceof RedisUnavailableError) {
    const detail = ((mapped.cause as Error | undefined)?.message ?? mapped.message).replace(/^Redis is unavailable: /, '');
    // ioredis' words for a command refused while it reconnects ("Stream isn't writeable and enableOfflineQueue options is false").
    return /enableOfflineQueue|Connection is closed/.test(detail) ? `the connection was lost (${detail})` : detail;
  }
  if (mapped instanceof HeadroomError || mapped instanceof ReplyError) return (mapped as Error).message;
  return undefined;
}

const USAGE = `usage: headroom <command> [options]       headroom --help: this text

commands:
  worker      run a fleet process    --config headroom.config.yaml [--redis URL] [--id NAME]
  dashboard   Bull Board, the quota page, /metrics and alerts
              --config headroom.config.yaml [--redis URL] [--port N]
              [--read-only: refuse Bull Board's writes; without it, dashboard.readOnly decides (default true)]
              [--show-payloads: show prompts and completions in Bull Board's job view]
              [--local-only: bind 127.0.0.1; the only way to run without credentials]
  gateway     the providers' own HTTP APIs in front of the lanes: point an official SDK's baseURL here
              --config headroom.config.yaml [--redis URL] [--port N]
  status      the fleet as a table: lanes, pools, 429s, cost (exit 3: Redis could not be read)
              --config headroom.config.yaml [--redis URL] [--watch]
              [--check: no table; exit 1, one reason a line on stderr, unless the fleet takes work:
              a live worker, no lane held back or full, no alert firing (not with --watch)]
  demo        a whole fleet on this machine (private Redis, simulator, 3 workers, dashboard, gateway)
              [--duration SECONDS] [--workers N] [--check: exit 1 unless every lane completed jobs with zero 429s and,
              on the simulator, every call through the gateway was answered]
`;

/**
 * Where a relative path on the command line is read from: `HEADROOM_CWD` when set, else the
 * working directory. The repository's `pnpm headroom` script sets it to the directory pnpm was run
 * in (`INIT_CWD`), because pnpm runs a root script in the root: `cd infra && pnpm headroom status
 * --config headroom.sim.config.yaml` read the root's file, or none. The CLI does not read
 * `INIT_CWD` itself: under `pnpm --filter app run worker` it names where pnpm was run, not the
 * app's directory the script runs in and means its paths from.
 */
function callerPath(path: string): string {
  return resolve(process.env.HEADROOM_CWD || process.cwd(), path);
}

/** The config file, and the Redis URL from `--redis`, else the config (its `urlEnv` or `url`). */
function configAndRedis(given: string, flag: string | undefined): { config: HeadroomConfig; redisUrl: string } {
  // Absolute, so an error names the file tried rather than a path relative to a directory to guess.
  const file = callerPath(given);
  const config = loadConfig(file);
  const redisUrl = flag ?? redisUrlOf(config);
  if (!redisUrl) throw new HeadroomError('CONFIG_INVALID', `no Redis URL: set ${config.redis.urlEnv} or redis.url in ${file}, or pass --redis`);
  return { config, redisUrl };
}

/**
 * Runs a long-lived service until SIGTERM or SIGINT, then closes it (its own graceful stop), and
 * returns the exit code: 0, or 1 for a worker whose stop Redis did not answer
 * (docs/operations.md#shutdown). `start` gets a signal aborted on SIGTERM: a worker still waiting
 * for Redis to start stops on it too, rather than only once a start that may never end is done.
 */
async function serveUntilStopped(start: (signal: AbortSignal) => Promise<{ close(): Promise<unknown> }>): Promise<number> {
  // Listen before starting: a SIGTERM that lands during start-up still gets a clean stop.
  const stop = new AbortController();
  const stopped = new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
  process.once('SIGTERM', () => stop.abort());
  process.once('SIGINT', () => stop.abort());
  const service = await start(stop.signal);
  await stopped;
  // Only a worker tells how its stop went (`WorkerStopped`); the dashboard and the gateway hold no jobs.
  const outcome = (await service.close()) as { drained?: boolean } | undefined;
  return outcome?.drained === false ? 1 : 0;
}

/** Resolves after `ms`, or as soon as `signal` aborts. */
function pauseUnlessStopped(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** How often `--watch` redraws, and tries again while Redis cannot be read. */
const WATCH_EVERY_MS = 2_000;

/**
 * `headroom status --watch` until Ctrl-C or SIGTERM (then 0). A watch is what an operator looks at
 * through an incident: a Redis that cannot be reached (down, restarting, paused, mid-failover) is
 * shown, with how old the last figures are, and the watch goes on and draws the fleet again once
 * Redis answers. It ended at the first failed read (exit 3), at the moment it was most wanted.
 * Redis refusing it (a password, a database: a refusal of the connect, which waiting does not
 * change) still ends it with exit 3, and an error not from Redis is thrown as before.
 */
async function watchStatus(redis: ReturnType<typeof createRedis>, openReader: () => OverviewReader, redisUrl: string, stop: AbortSignal): Promise<number> {
  const draw = (text: string) => process.stdout.write(process.stdout.isTTY ? `\x1b[2J\x1b[H${text}\n` : `${text}\n`);
  let last: { table: string; atMs: number } | undefined;
  let unreachableSince: number | undefined;
  while (!stop.aborted) {
    try {
      await untilReady(redis, { waitMs: 5_000 });
      const overview = await openReader().read();
      last = { table: renderStatus(overview), atMs: overview.atMs };
      unreachableSince = undefined;
      draw(last.table);
    } catch (err) {
      // Stopped while a read waited on a Redis that does not answer: the stop is the news.
      if (stop.aborted) break;
      const failure = redisFailureOf(err);
      if (failure === undefined || asRedisError(err) instanceof RedisRefusedError) throw err;
      unreachableSince ??= Date.now();
      const line = renderUnreachable({ redisUrl: maskUrlPasswords(redisUrl), failure, sinceMs: unreachableSince, lastReadAtMs: last?.atMs, nowMs: Date.now(), retryMs: WATCH_EVERY_MS });
      // On a terminal the last table stays on screen under the line; piped, the line alone.
      draw(process.stdout.isTTY && last ? `${last.table}\n\n${line}` : line);
    }
    await pauseUnlessStopped(WATCH_EVERY_MS, stop);
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv);
  if (parsed.kind === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (parsed.kind === 'none') {
    process.stderr.write(USAGE);
    return 0;
  }
  if (parsed.kind === 'usage') {
    // A usage mistake, not a crash: say what is wrong, no stack (docs/operations.md#exit-codes).
    // A command's mistakes name it already (`headroom worker: ...`); others get the program's name.
    const said = parsed.message.startsWith('headroom ') ? parsed.message : `headroom: ${parsed.message}`;
    process.stderr.write(`${said}\n${parsed.showUsage ? `\n${USAGE}` : ''}`);
    return 2;
  }
  const values = parsed.args;
  const { command } = values;
  // Checked before anything starts: a bad HEADROOM_LOG_LEVEL surfaced as a pino stack and exit 1
  // from deep inside a service's start (and, for the demo, from each child it spawns).
  if (command !== 'status') logLevelOf(undefined);
  switch (command) {
    case 'worker': {
      const { config, redisUrl } = configAndRedis(values.config, values.redis);
      return serveUntilStopped(async (signal) => {
        const { startWorker } = await import('@headroom/worker');
        return startWorker({ config, redisUrl, signal, ...(values.id ? { id: values.id } : {}) });
      });
    }
    case 'dashboard': {
      const { config, redisUrl } = configAndRedis(values.config, values.redis);
      const { port } = values;
      return serveUntilStopped(async () => {
        const { startDashboard } = await import('@headroom/dashboard');
        return startDashboard({
          config,
          redisUrl,
          localOnly: values.localOnly,
          ...(values.readOnly ? { readOnly: true } : {}),
          showPayloads: values.showPayloads,
          ...(port !== undefined ? { port, portSetting: '--port' } : {}),
        });
      });
    }
    case 'gateway': {
      const { config, redisUrl } = configAndRedis(values.config, values.redis);
      const { port } = values;
      return serveUntilStopped(async () => {
        const { startGateway } = await import('@headroom/gateway');
        return startGateway({ config, redisUrl, ...(port !== undefined ? { port, portSetting: '--port' } : {}) });
      });
    }
    case 'status': {
      const { config, redisUrl } = configAndRedis(values.config, values.redis);
      const redis = createRedis(redisUrl, 'producer');
      // A read that fails says so through its own promise; without a listener ioredis would also
      // print each reconnect's error, with a stack, between the tables.
      redis.on('error', () => {});
      let reader: OverviewReader | undefined;
      // `--watch` ends by Ctrl-C or SIGTERM: that is its way to end, so it exits 0 as a service
      // stopped by them does (docs/operations.md#exit-codes), where the signal killed it (130 or
      // 143 in a shell, which a script reads as a failure). A second signal ends it at once.
      const stop = new AbortController();
      if (values.watch) {
        process.once('SIGINT', () => stop.abort());
        process.once('SIGTERM', () => stop.abort());
      }
      try {
        const { openOverviewReader } = await import('@headroom/dashboard');
        // Opened once Redis is ready: its lane queues' set-up waits on a connection that is.
        const open = () => (reader ??= openOverviewReader(redis, config));
        if (values.watch) return await watchStatus(redis, open, redisUrl, stop.signal);
        await untilReady(redis, { waitMs: 5_000 });
        if (values.check) {
          // A probe's verdict, not a table: silent when the fleet takes work, so a cron line mails
          // only the reasons. A read that fails still lands below and exits 3, never 0 or 1.
          const reasons = checkReasons(await open().read(), config.dashboard.alerts);
          for (const r of reasons) process.stderr.write(`headroom status --check: ${r.message}\n`);
          return reasons.length > 0 ? EXIT_CHECK_FAILED : 0;
        }
        process.stdout.write(`${renderStatus(await open().read())}\n`);
      } catch (err) {
        // Redis down, unreachable or refusing (a wrong password): one line saying which Redis and
        // what it said, and a code of its own, where a read failing mid-table printed a stack and 1.
        const failure = redisFailureOf(err);
        if (failure === undefined) throw err;
        process.stderr.write(`headroom status: cannot read the fleet from Redis at ${maskUrlPasswords(redisUrl)}: ${failure}\n`);
        return EXIT_REDIS_UNREADABLE;
      } finally {
        await reader?.close();
        redis.disconnect();
      }
      return 0;
    }
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo({
        ...(values.durationSec !== undefined ? { durationSec: values.durationSec } : {}),
        ...(values.workers !== undefined ? { workers: values.workers } : {}),
        check: values.check,
      });
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof HeadroomError) {
      process.stderr.write(`headroom: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`headroom: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
