/**
 * The three services log their start and stop the same way, as JSON lines (docs/operations.md#logs):
 * `<service> started`, then on SIGTERM `<service> stopping` and, last, `<service> stopped`. The
 * gateway's log ended at its start, a SIGTERM stop unseen though it exited 0, and it wrote a
 * plain-text `headroom gateway listening on ...` among the JSON lines; the dashboard said
 * nothing of its stop.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { REPO_ROOT, writeConfig } from '../support/fleet.js';
import { until } from '../support/probes.js';

const ENV = {
  SERVICE_LOGS_PROVIDER_KEY: 'sk-service-logs-provider',
  SERVICE_LOGS_GATEWAY_KEY: 'hr-service-logs-0123456789abcdef',
  HEADROOM_LOG_LEVEL: 'info',
  HEADROOM_DASHBOARD_USER: '',
  HEADROOM_DASHBOARD_PASSWORD: '',
  HEADROOM_DASHBOARD_TOKEN: '',
};

let redis: EmbeddedRedis;
let config: string;
beforeAll(async () => {
  redis = await startEmbeddedRedis();
  config = writeConfig({
    redis: { prefix: 'svclog' },
    providers: { anthropic: { apiKeyEnv: 'SERVICE_LOGS_PROVIDER_KEY' } },
    models: { 'claude-haiku-4-5': { provider: 'anthropic' } },
    gateway: { host: '127.0.0.1', keys: { app: { keyEnv: 'SERVICE_LOGS_GATEWAY_KEY' } } },
  });
});
afterAll(async () => {
  await redis?.stop();
});

/** Runs `headroom <args>` from source until it has started, then SIGTERM: its exit code and its stdout alone. */
async function startAndStop(service: string, args: string[]): Promise<{ code: number | null; stdout: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=@headroom/source', join(REPO_ROOT, 'packages/cli/src/cli.ts'), service, '--config', config, '--redis', redis.url, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await until(() => stdout.includes(`"msg":"${service} started"`) || child.exitCode !== null, 60_000, `${service} to start`);
    if (child.exitCode !== null) throw new Error(`${service} exited before it started:\n${stdout}${stderr}`);
  } finally {
    child.kill('SIGTERM');
  }
  return { code: await exited, stdout };
}

describe('start and stop in the log', () => {
  it.each([
    ['worker', ['--id', 'svclog-w1']],
    ['dashboard', ['--local-only', '--port', '0']],
    ['gateway', ['--port', '0']],
  ])('%s: JSON lines only, "started" first of its own, "stopping", then "stopped" last', async (service, args) => {
    const { code, stdout } = await startAndStop(service, args);
    const lines = stdout.split('\n').filter((l) => l.trim() !== '');
    const parsed = lines.map((line) => {
      try {
        return JSON.parse(line) as { msg?: string; url?: string };
      } catch {
        throw new Error(`not a JSON line: ${line}`);
      }
    });
    const msgs = parsed.map((l) => l.msg);
    expect(msgs).toContain(`${service} started`);
    expect(msgs.indexOf(`${service} stopping`)).toBeGreaterThan(msgs.indexOf(`${service} started`));
    expect(msgs.at(-1)).toBe(`${service} stopped`);
    if (service !== 'worker') expect(parsed.find((l) => l.msg === `${service} started`)?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(code).toBe(0);
  });
});
