/**
 * Starts real fleet processes for tests and benchmarks: `headroom worker` children running the
 * worker's source through tsx, with a config file written for the test.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HeadroomConfigInput } from '@headroom/queue';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(REPO_ROOT, 'packages/cli/src/cli.ts');

/** YAML is a superset of JSON, so a JSON body is a valid headroom.config.yaml. */
export function writeConfig(config: HeadroomConfigInput): string {
  const file = join(mkdtempSync(join(tmpdir(), 'headroom-cfg-')), 'headroom.config.yaml');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

export interface FleetProcess {
  child: ChildProcess;
  id: string;
  output(): string;
  /** Resolves with the exit code (or signal) once the process is gone. */
  exited: Promise<number | string>;
}

/**
 * Extra node flags for every fleet process, e.g. `HEADROOM_FLEET_NODE_FLAGS="--cpu-prof
 * --cpu-prof-dir=/tmp/prof"` to profile a bench's workers and gateway (node refuses --cpu-prof in
 * NODE_OPTIONS). A process writes its profile when it exits on SIGTERM.
 */
const NODE_FLAGS = (process.env.HEADROOM_FLEET_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);

/** Runs a TypeScript script of the repository through tsx, on the packages' source, from the repository root. */
export function spawnTsx(script: string, args: string[] = [], opts: Omit<SpawnOptions, 'cwd'> = {}): ChildProcess {
  return spawn(process.execPath, [...NODE_FLAGS, '--import', 'tsx', '--conditions=@headroom/source', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts, cwd: REPO_ROOT });
}

/** The processes spawned since the last `takeSpawned()`: what a failed test prints (report-failures.ts). */
const spawned: FleetProcess[] = [];

export function takeSpawned(): FleetProcess[] {
  return spawned.splice(0);
}

export function spawnHeadroom(args: string[], env: NodeJS.ProcessEnv = {}): FleetProcess {
  const child = spawnTsx(CLI, args, { env: { ...process.env, HEADROOM_LOG_LEVEL: 'warn', ...env } });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const idIndex = args.indexOf('--id');
  const proc: FleetProcess = { child, id: idIndex >= 0 ? (args[idIndex + 1] ?? '') : args[0] ?? '', output: () => out, exited };
  spawned.push(proc);
  return proc;
}

export function spawnWorker(configFile: string, redisUrl: string, id: string, env: NodeJS.ProcessEnv = {}): FleetProcess {
  return spawnHeadroom(['worker', '--config', configFile, '--redis', redisUrl, '--id', id], env);
}

export async function stopAll(procs: FleetProcess[], signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  await Promise.all(
    procs.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.child.kill(signal);
      const timer = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
      await p.exited;
      clearTimeout(timer);
    }),
  );
}

/**
 * Resolves once `proc` has logged `text`; throws with its output if it exits first or `ms`
 * passes. The bound is generous on purpose: a process start (tsx compiling the sources) takes
 * seconds on a loaded 2-core machine, and the bound only decides when a failing test gives up.
 */
export async function loggedLine(proc: FleetProcess, text: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!proc.output().includes(text)) {
    if (Date.now() > end || proc.child.exitCode !== null) throw new Error(`no ${text} from ${proc.id} in ${ms} ms:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The exit code (or signal) of a process expected to end, or a note that it is still running
 * `ms` later: a hang fails the test with that note rather than the test's own timeout.
 */
export async function exitOf(proc: FleetProcess, ms = 60_000): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`still running ${ms / 1000} s later`), ms);
  });
  try {
    return await Promise.race([proc.exited, hung]);
  } finally {
    clearTimeout(timer);
  }
}
