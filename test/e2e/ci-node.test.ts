/**
 * `.ci/run`'s Node check (.ci/node-version.sh), run by bash as `.ci/run` sources it, with this
 * machine's real node and npm. When node was missing `.ci/run` installed Debian's `nodejs` (18.x
 * on Debian 12) and went on below package.json's `engines.node`; now a node below it is replaced
 * from the npm registry (`npm install -g node@<major>`) and checked again, or the run stops saying
 * so. The replacing path needs a node older than the engines' minimum, which this machine has not:
 * it was checked by hand (`npm install --prefix <dir> node@20` gives a working v20 binary from the
 * registry); here, a minimum no node meets shows the refusal, through the real registry.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/fleet.js';

/** Runs `ensure_node` as .ci/run does (set -euo pipefail) in `cwd` (whose package.json it reads); apt is a shell function recording its calls. */
function ensureNode(cwd: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  const script = join(REPO_ROOT, '.ci', 'node-version.sh');
  const body = `set -euo pipefail; log() { echo "== $*"; }; apt_install() { echo "apt $*"; }; SUDO=""; . '${script}'; ensure_node; echo "node now $(node --version)"`;
  return new Promise((resolve) => {
    execFile('/bin/bash', ['-c', body], { cwd, env: { ...process.env, ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, out: stdout + stderr });
    });
  });
}

describe('.ci/run: node', () => {
  it("leaves this machine's node alone when it meets engines.node: no apt, no npm", async () => {
    const r = await ensureNode(REPO_ROOT);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`node now ${process.version}`);
    expect(r.out).not.toMatch(/apt |installing/);
  });

  it('stops with a clear message when the npm registry has no node meeting engines.node', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'headroom-ci-node-'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'x', private: true, engines: { node: '>=99.0' } }));
    // npm's global prefix in the scratch directory: nothing lands in the machine's own.
    const r = await ensureNode(dir, { npm_config_prefix: join(dir, 'global') });
    expect(r.out).toContain(`node ${process.version} is below 99.0: installing node@99 from the npm registry`);
    expect(r.out).toContain(`Node.js >= 99.0 is required (package.json engines); found ${process.version}`);
    expect(r.out).toContain('npm install -g node@99 failed');
    expect(r.code).toBe(1);
    expect(r.out).not.toContain('node now');
  });
});
