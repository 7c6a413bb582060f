/**
 * `pnpm demo` as a newcomer runs it, in a process group of its own (as a terminal's foreground
 * job is: a signal to -pid reaches all of it), with no REDIS_URL or API keys from the environment
 * unless `extraEnv` gives them.
 */
import { spawn } from 'node:child_process';
import { REPO_ROOT } from './fleet.js';

export function startDemo(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  const env: NodeJS.ProcessEnv = { ...process.env, HEADROOM_LOG_LEVEL: 'warn' };
  for (const k of ['REDIS_URL', 'ANTHROPIC_API_KEY', 'OPENAI_API_KEY']) delete env[k];
  Object.assign(env, extraEnv);
  // A process group of its own, as a terminal's foreground job is: a signal to -pid reaches all of it.
  const child = spawn('pnpm', ['demo', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { child, exited, output: () => out };
}
