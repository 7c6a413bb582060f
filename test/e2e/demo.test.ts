/**
 * The README's main command, as a newcomer runs it: `pnpm demo` with nothing configured (no
 * REDIS_URL, no API keys) starts its own Redis, the simulator, workers and the dashboard, drives
 * every lane, and with --check exits 0 only if every lane completed jobs with zero 429s.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/fleet.js';

describe('pnpm demo', () => {
  it('runs headless for 15 s and completes jobs in every lane with zero 429s', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, HEADROOM_LOG_LEVEL: 'warn' };
    for (const k of ['REDIS_URL', 'ANTHROPIC_API_KEY', 'OPENAI_API_KEY']) delete env[k];
    const child = spawn('pnpm', ['demo', '--duration', '15', '--check'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(out).toContain('started a private redis-server');
    expect(out).toContain('provider   simulator at');
    expect(out).toMatch(/dashboard {2}http:\/\/127\.0\.0\.1:\d+\/ {2}\(user demo, password \S+\)/);
    expect(out, out.slice(-3000)).toContain('check passed: jobs completed in every lane, zero 429s');
    expect(code).toBe(0);
  }, 120_000);
});
