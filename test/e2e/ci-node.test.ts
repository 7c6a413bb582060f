/**
 * `.ci/run`'s Node check (.ci/node-version.sh), run by bash as `.ci/run` sources it. When node was
 * missing it installed Debian's `nodejs` (18.x on Debian 12) and went on below package.json's
 * `engines.node`; now a node below it is replaced from the npm registry (`npm install -g
 * node@<major>`) and checked again, or the run stops saying so. The `node` and `npm` on PATH here
 * are small scripts standing in for an old install and the registry (CI machines reach only
 * Debian's packages and the npm registry); the real `npm install -g node@20` was checked by hand.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/fleet.js';

const REQUIRED = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node.replace(/^>=/, '');

function script(path: string, body: string): void {
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
}

/** A directory of stand-ins: `node` printing `version` (none: no node at all), and an `npm` whose global install of node puts `installs` (if any) first. */
function machine(version: string | undefined, installs: string | undefined): { path: string; calls: string } {
  const dir = mkdtempSync(join(tmpdir(), 'headroom-ci-node-'));
  const bin = join(dir, 'bin');
  const globalBin = join(dir, 'global', 'bin');
  mkdirSync(bin);
  mkdirSync(globalBin, { recursive: true });
  const calls = join(dir, 'calls');
  writeFileSync(calls, '');
  if (version) script(join(bin, 'node'), `[ "$1" = --version ] && echo v${version}`);
  let install = 'true';
  if (installs) {
    // What the registry's package would put in npm's global bin.
    script(join(dir, 'registry-node'), `[ "$1" = --version ] && echo v${installs}`);
    install = `/bin/cp ${join(dir, 'registry-node')} ${globalBin}/node`;
  }
  script(join(bin, 'npm'), `echo "npm $*" >> ${calls}\nif [ "$1 $2" = "prefix -g" ]; then echo ${join(dir, 'global')}; elif [ "$1 $2" = "install -g" ]; then ${install}; fi`);
  // What bash needs and nothing else: no other node on PATH.
  for (const tool of ['sed', 'head']) script(join(bin, tool), `exec /usr/bin/${tool} "$@"`);
  return { path: bin, calls };
}

/** Runs `ensure_node` as .ci/run does (set -euo pipefail), apt stubbed to record its calls: exit code, output, node after. */
function ensureNode(m: { path: string; calls: string }): Promise<{ code: number; out: string; node: string; calls: string }> {
  const body = `set -euo pipefail; log() { echo "== $*"; }; apt_install() { echo "apt $*" >> ${m.calls}; }; SUDO=""; . .ci/node-version.sh; ensure_node; echo "node now $(node --version)"`;
  return new Promise((resolve) => {
    execFile('/bin/bash', ['-c', body], { cwd: REPO_ROOT, env: { PATH: m.path } }, (err, stdout, stderr) => {
      const out = stdout + stderr;
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, out, node: /node now (\S+)/.exec(out)?.[1] ?? '', calls: readFileSync(m.calls, 'utf8') });
    });
  });
}

describe('.ci/run: node', () => {
  it(`leaves a node at ${REQUIRED} or later alone: no apt, no npm`, async () => {
    const r = await ensureNode(machine('20.20.2', undefined));
    expect(r).toMatchObject({ code: 0, node: 'v20.20.2', calls: '' });
  });

  it("replaces a node below it (Debian 12's 18.x) from the npm registry, and runs on the new one", async () => {
    const r = await ensureNode(machine('18.19.0', '20.20.2'));
    expect(r.out).toContain(`node v18.19.0 is below ${REQUIRED}: installing node@20 from the npm registry`);
    expect(r.calls).toContain('npm install -g node@20');
    expect(r).toMatchObject({ code: 0, node: 'v20.20.2' });
  });

  it('stops with a clear message when the registry gives no supported node', async () => {
    const r = await ensureNode(machine('18.19.0', undefined));
    expect(r.code).toBe(1);
    expect(r.out).toContain(`Node.js >= ${REQUIRED} is required (package.json engines); found v18.19.0`);
    expect(r.node).toBe('');
  });
});
