/**
 * `headroom dashboard` (the real CLI process) follows `dashboard.readOnly`: a config that says
 * true, or says nothing (the default is true), refuses Bull Board's writes; `false` allows them;
 * `--read-only` refuses them whatever the config says. The flag used to default to false and
 * always win, so the config was never read and every dashboard allowed writes.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '@headroom/producer-sdk';
import { laneKeys, parseConfig, publishFleetSettings, type HeadroomConfigInput } from '@headroom/queue';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { spawnHeadroom, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { until } from '../support/probes.js';

const MODEL = 'claude-haiku-4-5';
const NO_CREDENTIALS = { HEADROOM_DASHBOARD_USER: '', HEADROOM_DASHBOARD_PASSWORD: '', HEADROOM_DASHBOARD_TOKEN: '', HEADROOM_LOG_LEVEL: 'info' };
const COMPLETED = 3;

let redis: EmbeddedRedis;
let admin: Redis;
const procs: FleetProcess[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  await stopAll(procs, 'SIGKILL');
  admin?.disconnect();
  await redis?.stop();
});

/** A fleet config under a fresh prefix, with `COMPLETED` finished jobs in its LOW lane. */
async function fleetWithCompletedJobs(dashboard: HeadroomConfigInput['dashboard'] | undefined): Promise<{ file: string; prefix: string }> {
  const prefix = `ro-${randomUUID().slice(0, 8)}`;
  const input: HeadroomConfigInput = { redis: { prefix }, models: { [MODEL]: { provider: 'anthropic' } }, ...(dashboard ? { dashboard } : {}) };
  await publishFleetSettings(admin, parseConfig(input));
  const k = laneKeys(prefix, 'low');
  const producer = new Producer({ redis: redis.url, prefix });
  const worker = new Worker(k.queueName, async () => ({ ok: true }), { prefix: k.bullPrefix, connection: new Redis(redis.url, { maxRetriesPerRequest: null }) });
  try {
    for (let i = 0; i < COMPLETED; i++) {
      await producer.enqueue({ priority: 'LOW', provider: 'anthropic', request: { model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: `ro ${i}` }] } });
    }
    await until(async () => (await admin.zcard(k.completed)) === COMPLETED, 15_000, 'jobs completed');
  } finally {
    await worker.close();
    await producer.close();
  }
  return { file: writeConfig(input), prefix };
}

async function dashboard(file: string, flags: string[] = []): Promise<{ url: string; proc: FleetProcess }> {
  const port = await freePort();
  const proc = spawnHeadroom(['dashboard', '--config', file, '--redis', redis.url, '--local-only', '--port', String(port), ...flags], NO_CREDENTIALS);
  procs.push(proc);
  const url = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.ok === true, 60_000, 'the dashboard answering /healthz');
  return { url, proc };
}

/**
 * What the process said it started with, what Bull Board reports, and what a write did: removing
 * one completed job (Bull Board's per-job clean, which, unlike cleaning a whole state, has no grace
 * period that would make the outcome depend on how long ago the job finished).
 */
async function tryRemove(file: string, prefix: string, flags: string[] = []) {
  const { url, proc } = await dashboard(file, flags);
  try {
    const started = proc.output().split('\n').filter((l) => l.includes('"msg":"dashboard started"')).map((l) => JSON.parse(l) as { readOnly: boolean });
    const lanes = (await (await fetch(`${url}/admin/queues/api/queues`)).json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    const completed = laneKeys(prefix, 'low').completed;
    const [jobId] = await admin.zrange(completed, '0', '0');
    const remove = await fetch(`${url}/admin/queues/api/queues/low/${jobId}/clean`, { method: 'PUT' });
    const body = (await remove.json().catch(() => ({}))) as { error?: { code: string } };
    return {
      loggedReadOnly: started.map((s) => s.readOnly),
      readOnlyMode: [...new Set(lanes.queues.map((q) => q.readOnlyMode))],
      status: remove.status,
      code: body.error?.code,
      completedLeft: await admin.zcard(completed),
    };
  } finally {
    await stopAll([proc]);
  }
}

const REFUSED = { loggedReadOnly: [true], readOnlyMode: [true], status: 403, code: 'READ_ONLY', completedLeft: COMPLETED };

describe('headroom dashboard and dashboard.readOnly', () => {
  it('refuses Bull Board writes when the config says readOnly: true', async () => {
    const { file, prefix } = await fleetWithCompletedJobs({ readOnly: true });
    expect(await tryRemove(file, prefix)).toEqual(REFUSED);
  });

  it('refuses Bull Board writes when the config has no dashboard section (the default is read-only)', async () => {
    const { file, prefix } = await fleetWithCompletedJobs(undefined);
    expect(await tryRemove(file, prefix)).toEqual(REFUSED);
  });

  it('allows them when the config says readOnly: false', async () => {
    const { file, prefix } = await fleetWithCompletedJobs({ readOnly: false });
    expect(await tryRemove(file, prefix)).toEqual({ loggedReadOnly: [false], readOnlyMode: [false], status: 204, code: undefined, completedLeft: COMPLETED - 1 });
  });

  it('refuses them with --read-only even when the config says readOnly: false', async () => {
    const { file, prefix } = await fleetWithCompletedJobs({ readOnly: false });
    expect(await tryRemove(file, prefix, ['--read-only'])).toEqual(REFUSED);
  });
});
