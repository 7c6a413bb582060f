/**
 * Starts a private `redis-server` on a free loopback port with its own temporary directory.
 * The demo uses it when `REDIS_URL` is unset; tests use it so each file gets a Redis of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The `code` of the error `startEmbeddedRedis` rejects with when `redis-server` is not installed. */
export const REDIS_SERVER_NOT_FOUND = 'REDIS_SERVER_NOT_FOUND';

export interface EmbeddedRedisOptions {
  /** @default a free port */
  port?: number;
  /** Turn on the append-only file (with `appendfsync everysec`) for durability tests. @default false */
  appendOnly?: boolean;
  /** Data directory. @default a new temporary directory, removed on stop */
  dir?: string;
  /** Extra `redis-server` arguments, e.g. `['--requirepass', 'pw']`. */
  args?: string[];
  /** @default 'redis-server' */
  binary?: string;
  /**
   * Run the server in a process group of its own, so a terminal's Ctrl-C (sent to the whole
   * foreground group) does not reach it: its owner stops it when it is done with it. @default false
   */
  detached?: boolean;
}

export interface EmbeddedRedis {
  url: string;
  port: number;
  dir: string;
  process: ChildProcess;
  /** Stops the server (SIGTERM, or SIGKILL with `{ kill: true }`) and removes a temporary dir. */
  stop(opts?: { kill?: boolean; keepDir?: boolean }): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export async function startEmbeddedRedis(opts: EmbeddedRedisOptions = {}): Promise<EmbeddedRedis> {
  const port = opts.port ?? (await freePort());
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'headroom-redis-'));
  const binary = opts.binary ?? 'redis-server';
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', opts.appendOnly ? 'yes' : 'no', '--appendfsync', 'everysec',
    ...(opts.args ?? []),
  ];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: opts.detached ?? false });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { output += d.toString(); });

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start on port ${port}:\n${output}`)), 10_000);
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        err.code === 'ENOENT'
          ? Object.assign(
              new Error('redis-server was not found on PATH. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL to a running Redis.'),
              { code: REDIS_SERVER_NOT_FOUND },
            )
          : err,
      );
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`redis-server exited with ${code}:\n${output}`)); });
    const poll = setInterval(() => {
      if (output.includes('Ready to accept connections')) {
        clearInterval(poll); clearTimeout(timer); child.removeAllListeners('exit'); resolve();
      }
    }, 20);
    child.once('exit', () => clearInterval(poll));
  });

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    process: child,
    async stop({ kill = false, keepDir = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill(kill ? 'SIGKILL' : 'SIGTERM');
        await exited;
      }
      if (ownDir && !keepDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
