/**
 * `infra/` checked against the code, since Docker and Kubernetes do not run here: every YAML file
 * parses; every command and flag the manifests give `headroom` is in the CLI's usage; the
 * ConfigMap's headroom.config.yaml passes `parseConfig`; every environment variable set for a
 * Headroom container is one the code reads; the KEDA list names are `laneKeys()`; the stop grace
 * outlasts `dispatch.shutdownGraceMs` (a gateway's, its preStop and `gateway.shutdownGraceMs`);
 * and the Dockerfile's pnpm commands name real packages and scripts of this workspace.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { INTERACTIVE_LANES, laneKeys, loadConfig, parseConfig, type HeadroomConfig } from '@headroom/queue';
import { REPO_ROOT, spawnHeadroom } from '../support/fleet.js';

const INFRA = join(REPO_ROOT, 'infra');
const K8S = join(INFRA, 'k8s');

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form YAML, checked field by field.
type Doc = any;

function yamlDocs(file: string): Doc[] {
  // merge: compose files share settings through `<<: *anchor`, which YAML 1.2 leaves unmerged.
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const d of list) expect(d.errors.map((e) => `${file}: ${e.message}`)).toEqual([]);
  return list.map((d) => d.toJS()).filter((d) => d !== null);
}

const k8sDocs = (): Doc[] => readdirSync(K8S).filter((f) => f.endsWith('.yaml')).flatMap((f) => yamlDocs(join(K8S, f)));
const byKind = (kind: string, name?: string): Doc[] => k8sDocs().filter((d) => d.kind === kind && (name === undefined || d.metadata?.name === name));
const one = (kind: string, name: string): Doc => {
  const found = byKind(kind, name);
  expect(found, `${kind}/${name}`).toHaveLength(1);
  return found[0];
};

/** Commands and their usage lines, read from the CLI itself (`headroom` with no command prints USAGE). */
async function cliUsage(): Promise<{ commands: Map<string, string>; global: string }> {
  const cli = spawnHeadroom([]);
  expect(await cli.exited).toBe(0);
  const lines = cli.output().split('\n');
  const commands = new Map<string, string>();
  let inCommands = false;
  let last: string | undefined;
  const global: string[] = [];
  for (const line of lines) {
    if (/^commands:/.test(line)) { inCommands = true; continue; }
    if (/^\S/.test(line)) inCommands = false;
    const m = /^ {2}([a-z][\w-]*)\s{2,}(.*)$/.exec(line);
    if (inCommands && m) {
      last = m[1]!;
      commands.set(last, m[2]!);
    } else if (inCommands && last && /^ {3,}\S/.test(line)) {
      // A usage line continued on the next, deeper-indented line.
      commands.set(last, `${commands.get(last)} ${line.trim()}`);
    } else {
      global.push(line);
    }
  }
  return { commands, global: global.join('\n') };
}

/** `${VAR:-default}` / `${VAR:?message}` / `${VAR}` as compose would see them with VAR unset. */
const composeDefault = (text: string) => text.replace(/\$\{[A-Z_]+(?::-([^}]*)|:\?[^}]*)?\}/g, (_m, def: string | undefined) => def ?? 'x');

/** Every string value under a key ending in `Env`: the environment variables a config names. */
function configEnvNames(value: unknown, out = new Set<string>()): Set<string> {
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k.endsWith('Env') && typeof v === 'string') out.add(v);
      else configEnvNames(v, out);
    }
  }
  return out;
}

/** Names the worker package's source reads itself (beyond the config's *Env keys). */
function sourceMentions(name: string): boolean {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [join(dir, e.name)] : []));
  // `process.env.X`, or `env.X` of an environment a function takes (defaulting to process.env).
  const read = new RegExp(`\\benv\\.${name}\\b`);
  return ['queue', 'worker', 'producer-sdk'].some((p) => walk(join(REPO_ROOT, 'packages', p, 'src')).some((f) => read.test(readFileSync(f, 'utf8'))));
}

/** Node.js' own variables, which a container may set for the runtime. */
const NODE_ENV_VARS = new Set(['NODE_ENV', 'NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS']);

let usage: Awaited<ReturnType<typeof cliUsage>>;
let cmConfig: HeadroomConfig;

beforeAll(async () => {
  usage = await cliUsage();
  const cm = one('ConfigMap', 'headroom-config');
  cmConfig = parseConfig(parseYaml(cm.data['headroom.config.yaml']), 'ConfigMap headroom-config');
});

function expectHeadroomCommand(args: string[], where: string) {
  const [command, ...rest] = args;
  expect(usage.commands.has(command!), `${where}: "headroom ${command}" is not a command of the CLI (${[...usage.commands.keys()].join(', ')})`).toBe(true);
  for (const flag of rest.filter((a) => a.startsWith('--'))) {
    const line = usage.commands.get(command!) ?? '';
    expect(line.includes(flag) || usage.global.includes(flag), `${where}: flag ${flag} is not in the usage of "headroom ${command}"`).toBe(true);
  }
}

function expectKnownEnv(names: string[], config: HeadroomConfig, where: string) {
  const fromConfig = configEnvNames(config);
  for (const name of names) {
    const known = fromConfig.has(name) || NODE_ENV_VARS.has(name) || sourceMentions(name);
    expect(known, `${where}: environment variable ${name} is read by no config key and no code`).toBe(true);
  }
}

describe('infra/k8s', () => {
  it('lists every manifest in the kustomization, and every one parses', () => {
    const kustomization = yamlDocs(join(K8S, 'kustomization.yaml'))[0];
    const files = readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(files.sort());
    expect(k8sDocs().every((d) => typeof d.kind === 'string' && typeof d.apiVersion === 'string')).toBe(true);
  });

  it('holds a headroom.config.yaml in the ConfigMap that parseConfig accepts, mounted where --config points', () => {
    expect(Object.keys(cmConfig.models).length).toBeGreaterThan(0);
    for (const name of ['headroom-worker', 'headroom-dashboard', 'headroom-gateway']) {
      const pod = one('Deployment', name).spec.template.spec;
      const container = pod.containers[0];
      const configPath = container.args[container.args.indexOf('--config') + 1];
      const mount = container.volumeMounts.find((m: Doc) => configPath.startsWith(`${m.mountPath}/`));
      expect(mount, `${name}: nothing mounted at ${configPath}`).toBeDefined();
      const volume = pod.volumes.find((v: Doc) => v.name === mount.name);
      expect(volume.configMap.name).toBe('headroom-config');
      expect(configPath.slice(mount.mountPath.length + 1)).toBe('headroom.config.yaml');
    }
  });

  it('runs only commands and flags the CLI has', () => {
    for (const d of byKind('Deployment')) {
      for (const c of d.spec.template.spec.containers) expectHeadroomCommand(c.args, `Deployment ${d.metadata.name}`);
    }
    expect(one('Deployment', 'headroom-worker').spec.template.spec.containers[0].args[0]).toBe('worker');
    expect(one('Deployment', 'headroom-dashboard').spec.template.spec.containers[0].args[0]).toBe('dashboard');
    expect(one('Deployment', 'headroom-gateway').spec.template.spec.containers[0].args[0]).toBe('gateway');
  });

  it('sets only environment variables the code reads, and every one the config needs', () => {
    for (const d of byKind('Deployment')) {
      const env: Doc[] = d.spec.template.spec.containers[0].env;
      expectKnownEnv(env.map((e) => e.name), cmConfig, `Deployment ${d.metadata.name}`);
      expect(env.map((e) => e.name)).toContain(cmConfig.redis.urlEnv);
    }
    const workerEnv = one('Deployment', 'headroom-worker').spec.template.spec.containers[0].env.map((e: Doc) => e.name);
    const providersInUse = new Set(Object.values(cmConfig.models).map((m) => m.provider));
    for (const p of providersInUse) expect(workerEnv).toContain(cmConfig.providers[p].apiKeyEnv);
    const dashEnv = one('Deployment', 'headroom-dashboard').spec.template.spec.containers[0].env.map((e: Doc) => e.name);
    expect(dashEnv).toEqual(expect.arrayContaining([cmConfig.dashboard.usernameEnv, cmConfig.dashboard.passwordEnv]));
    // The gateway refuses to start without every client key's variable.
    const gatewayEnv = one('Deployment', 'headroom-gateway').spec.template.spec.containers[0].env.map((e: Doc) => e.name);
    const keyEnvs = Object.values(cmConfig.gateway.keys).map((k) => k.keyEnv);
    expect(keyEnvs.length).toBeGreaterThan(0);
    expect(gatewayEnv).toEqual(expect.arrayContaining(keyEnvs));
  });

  it('gives a worker longer to stop than dispatch.shutdownGraceMs, and serves probes on the configured ports', () => {
    const worker = one('Deployment', 'headroom-worker').spec.template.spec;
    expect(worker.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(cmConfig.dispatch.shutdownGraceMs + 5_000);
    const ports = (c: Doc) => new Map<string, number>(c.ports.map((p: Doc) => [p.name, p.containerPort]));
    const wc = worker.containers[0];
    expect(ports(wc).get('metrics')).toBe(cmConfig.dispatch.metricsPort);
    for (const probe of [wc.readinessProbe, wc.livenessProbe]) expect(ports(wc).has((probe.httpGet ?? probe.tcpSocket).port)).toBe(true);
    const dc = one('Deployment', 'headroom-dashboard').spec.template.spec.containers[0];
    expect(ports(dc).get('http')).toBe(cmConfig.dashboard.port);
    expect(worker.securityContext.runAsNonRoot).toBe(true);
    // The gateway: preStop's sleep, then its drain, before any SIGKILL; probed on its port.
    const gateway = one('Deployment', 'headroom-gateway').spec.template.spec;
    const gc = gateway.containers[0];
    const preStopMs = Number(gc.lifecycle.preStop.exec.command[1]) * 1000;
    expect(gateway.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(preStopMs + cmConfig.gateway.shutdownGraceMs + 5_000);
    expect(ports(gc).get('http')).toBe(cmConfig.gateway.port);
    expect(ports(gc).get('metrics')).toBe(cmConfig.gateway.metricsPort);
    expect(one('Deployment', 'headroom-gateway').spec.template.metadata.annotations['prometheus.io/port']).toBe(String(cmConfig.gateway.metricsPort));
    expect(gc.readinessProbe.httpGet.path).toBe('/healthz');
    for (const probe of [gc.readinessProbe, gc.livenessProbe]) expect(ports(gc).has((probe.httpGet ?? probe.tcpSocket).port)).toBe(true);
    expect(gateway.securityContext.runAsNonRoot).toBe(true);
  });

  it('selects the right pods from the PodDisruptionBudget, the Service and each Deployment', () => {
    const labels = (name: string) => one('Deployment', name).spec.template.metadata.labels;
    const within = (selector: Record<string, string>, pod: Record<string, string>) => expect(pod).toMatchObject(selector);
    for (const d of byKind('Deployment')) within(d.spec.selector.matchLabels, d.spec.template.metadata.labels);
    within(one('PodDisruptionBudget', 'headroom-worker').spec.selector.matchLabels, labels('headroom-worker'));
    within(one('PodDisruptionBudget', 'headroom-gateway').spec.selector.matchLabels, labels('headroom-gateway'));
    for (const name of ['headroom-dashboard', 'headroom-gateway']) {
      const svc = one('Service', name);
      within(svc.spec.selector, labels(name));
      const portNames = one('Deployment', name).spec.template.spec.containers[0].ports.map((p: Doc) => p.name);
      for (const p of svc.spec.ports) expect(portNames).toContain(p.targetPort);
    }
  });

  it("scales the worker Deployment with KEDA on every interactive lane's wait list, as laneKeys() names it", () => {
    const so = one('ScaledObject', 'headroom-worker');
    expect(so.spec.scaleTargetRef.name).toBe('headroom-worker');
    const lists = so.spec.triggers.map((t: Doc) => t.metadata.listName);
    expect(lists.sort()).toEqual(INTERACTIVE_LANES.map((l) => laneKeys(cmConfig.redis.prefix, l).wait).sort());
    for (const t of so.spec.triggers) {
      expect(t.type).toBe('redis');
      expect(Number(t.metadata.listLength)).toBeGreaterThan(0);
      one('TriggerAuthentication', t.authenticationRef.name);
    }
    // A higher lane adds workers at a shorter backlog.
    const target = (lane: string) => Number(so.spec.triggers.find((t: Doc) => t.metadata.listName === laneKeys(cmConfig.redis.prefix, lane).wait).metadata.listLength);
    expect(target('critical')).toBeLessThan(target('high'));
    expect(target('high')).toBeLessThan(target('normal'));
    expect(target('normal')).toBeLessThan(target('low'));
  });

  it('documents every Secret and key the manifests reference in infra/README.md', () => {
    const readme = readFileSync(join(INFRA, 'README.md'), 'utf8');
    const refs: { name: string; key: string }[] = [];
    for (const d of byKind('Deployment')) for (const e of d.spec.template.spec.containers[0].env) if (e.valueFrom?.secretKeyRef) refs.push(e.valueFrom.secretKeyRef);
    for (const t of byKind('TriggerAuthentication')) refs.push(...t.spec.secretTargetRef);
    expect(refs.length).toBeGreaterThan(0);
    for (const { name, key } of refs) {
      expect(readme, `Secret ${name}`).toContain(`\`${name}\``);
      expect(readme, `key ${key} of ${name}`).toContain(`\`${key}\``);
    }
    expect(readme).toContain('noeviction');
  });
});

describe('infra/docker-compose.yml', () => {
  const compose = (): Doc => yamlDocs(join(INFRA, 'docker-compose.yml'))[0];
  const headroomServices = () => {
    const services = Object.entries<Doc>(compose().services).filter(([, s]) => String(s.image).startsWith('headroom'));
    expect(services.map(([name]) => name)).toEqual(expect.arrayContaining(['worker', 'dashboard', 'gateway', 'simulator']));
    return services;
  };

  it('runs Redis with AOF (fsync every second), a password and noeviction', () => {
    const redis = compose().services.redis;
    const cmd = [redis.command].flat().join(' ');
    for (const arg of ['--appendonly yes', '--appendfsync everysec', '--requirepass', '--maxmemory-policy noeviction']) expect(cmd).toContain(arg);
    expect(redis.volumes.some((v: string) => v.endsWith(':/data'))).toBe(true);
  });

  it('builds the image from infra/Dockerfile and mounts config files that load', () => {
    for (const [name, s] of headroomServices()) {
      expect(existsSync(resolve(INFRA, s.build.context, s.build.dockerfile)), name).toBe(true);
      for (const v of s.volumes ?? []) {
        const [source, target] = composeDefault(v).split(':');
        const file = resolve(INFRA, source!);
        expect(existsSync(file), `${name}: ${source}`).toBe(true);
        if (target === '/etc/headroom/headroom.config.yaml') loadConfig(file);
      }
    }
  });

  it('runs only commands the CLI (or the simulator) has, with replicas, a grace period and known env vars', () => {
    const simFlags = [...readFileSync(join(REPO_ROOT, 'packages/simulator/src/cli.ts'), 'utf8').matchAll(/'?([a-z-]+)'?: \{ type:/g)].map((m) => `--${m[1]}`);
    const rootConfig = loadConfig(join(REPO_ROOT, 'headroom.config.yaml'));
    for (const [name, s] of headroomServices()) {
      if (s.entrypoint?.[0] === 'headroom-sim') {
        for (const flag of s.command.filter((a: string) => a.startsWith('--'))) expect(simFlags, `${name}: ${flag}`).toContain(flag);
        continue;
      }
      expectHeadroomCommand(s.command, `compose service ${name}`);
      expectKnownEnv(Object.keys(s.environment ?? {}), rootConfig, `compose service ${name}`);
      expect(Object.keys(s.environment)).toContain(rootConfig.redis.urlEnv);
      expect(composeDefault(s.environment[rootConfig.redis.urlEnv])).toMatch(/^rediss?(-cluster)?:\/\//);
      if (s.command[0] === 'worker') {
        expect(Number(composeDefault(String(s.deploy.replicas)))).toBeGreaterThan(0);
        const configFile = resolve(INFRA, composeDefault(s.volumes[0]).split(':')[0]!);
        expect(Number.parseInt(s.stop_grace_period, 10) * 1000).toBeGreaterThanOrEqual(loadConfig(configFile).dispatch.shutdownGraceMs + 5_000);
      }
      if (s.command[0] === 'gateway') {
        expect(Object.keys(s.environment)).toEqual(expect.arrayContaining(Object.values(rootConfig.gateway.keys).map((k) => k.keyEnv)));
        expect(Number.parseInt(s.stop_grace_period, 10) * 1000).toBeGreaterThanOrEqual(rootConfig.gateway.shutdownGraceMs + 5_000);
      }
    }
    expect(compose().services.simulator.profiles).toEqual(['sim']);
    expect(compose().services.gateway.profiles).toEqual(['gateway']);
  });
});

describe('infra/Dockerfile', () => {
  // Instructions with their line continuations joined; comments dropped.
  const instructions = (): { op: string; args: string }[] =>
    readFileSync(join(INFRA, 'Dockerfile'), 'utf8')
      .replace(/\\\n/g, ' ')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => {
        const [op, ...rest] = l.split(/\s+/);
        return { op: op!.toUpperCase(), args: rest.join(' ') };
      });
  const rootPkg = () => JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8'));
  const workspacePackages = () => {
    const globs: string[] = yamlDocs(join(REPO_ROOT, 'pnpm-workspace.yaml'))[0].packages;
    const dirs = globs.flatMap((g) => (g.endsWith('/*') ? readdirSync(join(REPO_ROOT, g.slice(0, -2))).map((d) => `${g.slice(0, -2)}/${d}`) : [g]));
    return dirs
      .filter((d) => existsSync(join(REPO_ROOT, d, 'package.json')))
      .map((dir) => ({ dir, pkg: JSON.parse(readFileSync(join(REPO_ROOT, dir, 'package.json'), 'utf8')) }));
  };

  it('builds in one stage and runs a node >= 22 runtime as a non-root user with headroom as the entrypoint', () => {
    const ins = instructions();
    const froms = ins.filter((i) => i.op === 'FROM');
    expect(froms.length).toBeGreaterThanOrEqual(2);
    const lastFrom = ins.lastIndexOf(froms.at(-1)!);
    const runtime = ins.slice(lastFrom);
    const nodeVersion = ins.find((i) => i.op === 'ARG' && i.args.startsWith('NODE_VERSION='))?.args.split('=')[1];
    expect(Number(nodeVersion)).toBeGreaterThanOrEqual(22);
    expect(runtime[0]!.args).toMatch(/^node:\$\{NODE_VERSION\}-slim/);
    const user = runtime.filter((i) => i.op === 'USER').at(-1)?.args;
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
    expect(JSON.parse(runtime.find((i) => i.op === 'ENTRYPOINT')!.args)).toEqual(['headroom']);
    expectHeadroomCommand(JSON.parse(runtime.find((i) => i.op === 'CMD')!.args), 'Dockerfile CMD');
  });

  it('installs the pnpm of packageManager, copying every workspace manifest before a frozen install', () => {
    const ins = instructions();
    const runs = ins.filter((i) => i.op === 'RUN').map((i) => i.args);
    const pnpmVersion = (rootPkg().packageManager as string).replace(/^pnpm@/, '').split('+')[0];
    expect(runs.some((r) => r.includes(`npm install -g pnpm@${pnpmVersion}`))).toBe(true);
    const installAt = ins.findIndex((i) => i.op === 'RUN' && /\bpnpm install\b/.test(i.args));
    expect(ins[installAt]!.args).toContain('--frozen-lockfile');
    const copiedBefore = ins.slice(0, installAt).filter((i) => i.op === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    for (const f of ['package.json', 'pnpm-lock.yaml', 'pnpm-workspace.yaml']) expect(copiedBefore).toContain(f);
    for (const { dir } of workspacePackages()) expect(copiedBefore, `${dir}/package.json`).toContain(`${dir}/package.json`);
    for (const i of ins.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from'))) {
      for (const src of i.args.split(/\s+/).slice(0, -1)) expect(existsSync(join(REPO_ROOT, src)), `COPY ${src}`).toBe(true);
    }
    const ignored = readFileSync(join(INFRA, 'Dockerfile.dockerignore'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'));
    for (const src of copiedBefore) expect(ignored).not.toContain(src.split('/')[0]);
  });

  it("runs infra/README.md's `docker run` on the config it mounts, though its command names no --config", () => {
    // `docker run ... headroom:latest worker` replaces the image's CMD, and with it the CMD's
    // --config: the CLI then reads its default file from the working directory, which was /app
    // (the code; exit 2, "cannot read ... /app/headroom.config.yaml").
    const runtime = instructions().slice(instructions().findLastIndex((i) => i.op === 'FROM'));
    const workdir = runtime.filter((i) => i.op === 'WORKDIR').at(-1)?.args ?? '/';
    const defaultConfig = /--config (\S+)/.exec(usage.commands.get('worker')!)?.[1];
    expect(defaultConfig).toBeDefined();
    const readme = readFileSync(join(INFRA, 'README.md'), 'utf8').replace(/\\\n\s*/g, ' ');
    const runs = [...readme.matchAll(/^docker run (.*)$/gm)].map((m) => m[1]!);
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs) {
      const mounts = [...run.matchAll(/-v "?[^:\s]+:([^:\s"]+)/g)].map((m) => m[1]!);
      const args = run.split(/\s+/).slice(run.split(/\s+/).findIndex((w) => w.startsWith('headroom:')) + 1);
      if (args.length === 0) continue; // the image's CMD, checked above
      expectHeadroomCommand(args, `infra/README.md: docker run ... ${args.join(' ')}`);
      const at = args.indexOf('--config');
      const config = at >= 0 ? args[at + 1]! : posix.resolve(workdir, defaultConfig!);
      expect(mounts, `infra/README.md: docker run ... ${args.join(' ')} reads ${config}`).toContain(config);
    }
  });

  it("runs pnpm commands on real workspace packages and scripts, and links the deployed package's bins", () => {
    const pkgs = new Map(workspacePackages().map((p) => [p.pkg.name as string, p]));
    const runs = instructions().filter((i) => i.op === 'RUN').map((i) => i.args);
    const filtered = runs.flatMap((r) => [...r.matchAll(/pnpm --filter "?([^"\s]+)"? (--prod )?(\S+)/g)]);
    expect(filtered.length).toBeGreaterThanOrEqual(2);
    for (const [, selector, , command] of filtered) {
      const name = selector!.replace(/\.\.\.$/, '');
      const target = pkgs.get(name);
      expect(target, `--filter ${selector}`).toBeDefined();
      if (command === 'deploy') continue; // a pnpm command, not a script
      // `pkg...` runs the script in the package and every workspace package it depends on.
      const deps = Object.keys({ ...target!.pkg.dependencies }).filter((d) => pkgs.has(d));
      for (const p of [name, ...(selector!.endsWith('...') ? deps : [])]) expect(pkgs.get(p)!.pkg.scripts?.[command!], `${p} has no "${command}" script`).toBeDefined();
    }
    const deployed = filtered.find(([, , , c]) => c === 'deploy')![1]!;
    const app = pkgs.get(deployed)!;
    expect(app.pkg.files).toEqual(expect.arrayContaining(['dist', 'bin']));
    const links = [...runs.join(' ').matchAll(/ln -s (\/app\/\S+)/g)].map((m) => m[1]!);
    expect(links.length).toBeGreaterThan(0);
    for (const link of links) {
      const nested = /^\/app\/node_modules\/(@headroom\/[\w-]+)\/(.+)$/.exec(link);
      const file = nested ? join(REPO_ROOT, pkgs.get(nested[1]!)!.dir, nested[2]!) : join(REPO_ROOT, app.dir, link.slice('/app/'.length));
      expect(existsSync(file), link).toBe(true);
      if (nested) expect(Object.keys(app.pkg.dependencies)).toContain(nested[1]);
    }
    expect(Object.values(app.pkg.bin)).toContain('./bin/headroom.js');
    expect(dirname(app.dir)).toBe('packages');
  });
});
