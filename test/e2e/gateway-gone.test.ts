/**
 * `headroom gateway` killed outright (SIGKILL, as an OOM kill or a crash ends it) while it waits on
 * a stream in flight and on plain calls queued behind it. Its clients see their connections cut
 * and their SDKs would send the calls again, to another gateway: the fleet must not pay for the
 * first ones with nobody to answer. Once the gateway's heartbeat lapses (`gateway.heartbeatMs`,
 * short here) the worker stops the stream's provider call (the simulator sees its connection
 * closed before the stream's end) and withdraws the queued calls before theirs (the simulator
 * never sees them); every job ends CANCELLED, as a client's cancel ends it.
 */
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '@headroom/producer-sdk';
import { createLogger, laneKeys, parseConfig, readHeartbeats, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startWorker, type RunningWorker } from '@headroom/worker';
import { spawnHeadroom, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { until } from '../support/probes.js';

const SONNET = 'claude-sonnet-4-6';
const GPT = 'gpt-4.1';
const KEY = 'hr-gw-gone-key-0123456789abcdef0';
const ENV = { GONE_PROVIDER_KEY: 'sk-gone-provider', GONE_GATEWAY_KEY: KEY, HEADROOM_LOG_LEVEL: 'info' };
const PREFIX = 'gone';

let redis: EmbeddedRedis;
let admin: Redis;
let sim: Simulator;
let worker: RunningWorker;
let producer: Producer;
const gateways: FleetProcess[] = [];

function configInput(): HeadroomConfigInput {
  return {
    redis: { prefix: PREFIX },
    providers: {
      anthropic: { baseURL: sim.url, apiKeyEnv: 'GONE_PROVIDER_KEY' },
      openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: 'GONE_PROVIDER_KEY' },
    },
    models: { [SONNET]: { provider: 'anthropic' }, [GPT]: { provider: 'openai' } },
    // One call at a time: the plain calls wait in their lane behind the stream.
    dispatch: { concurrency: 1 },
    // A beat every second, each vouching for 3 s: the gateway is known gone within about 4 s of
    // the kill, well inside the stream's 30 s, while a live gateway on a busy machine (timers
    // late by a second) is never taken for dead before it.
    gateway: { host: '127.0.0.1', keys: { app: { keyEnv: 'GONE_GATEWAY_KEY' } }, heartbeatMs: 1_000 },
  };
}

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
  sim = await startSimulator({ latencyMs: 5, outputTokens: { min: 300, max: 300 } });
  worker = await startWorker({ config: parseConfig(configInput()), redisUrl: redis.url, env: ENV, logger: createLogger({ level: 'silent' }) });
  producer = new Producer({ redis: redis.url, prefix: PREFIX });
});
afterAll(async () => {
  await stopAll(gateways, 'SIGKILL');
  await producer?.close();
  await worker?.close({ graceMs: 1_000 });
  await sim?.close();
  admin?.disconnect();
  await redis?.stop();
});

/** A `headroom gateway` process, once it listens and its first beat is in the fleet's gateways. */
async function startGatewayProcess(): Promise<{ proc: FleetProcess; url: string; id: string }> {
  const port = await freePort();
  const proc = spawnHeadroom(['gateway', '--config', writeConfig(configInput()), '--redis', redis.url, '--port', String(port)], ENV);
  gateways.push(proc);
  let id: string | undefined;
  await until(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`gateway exited:\n${proc.output()}`);
      // Its own entry: one killed before may still be alive in the hash.
      id = (await readHeartbeats(admin, PREFIX, 'gateway')).alive.find((hb) => hb.pid === proc.child.pid)?.id;
      return id !== undefined && proc.output().includes('"msg":"gateway started"');
    },
    30_000,
    'the gateway to listen and beat',
  );
  return { proc, url: `http://127.0.0.1:${port}`, id: id! };
}

/** Jobs waiting in the normal lane: its wait list, then its prioritized set. */
async function queued(): Promise<string[]> {
  const k = laneKeys(PREFIX, 'normal');
  return [...(await admin.lrange(k.wait, 0, -1)), ...(await admin.zrange(k.prioritized, '0', '-1'))];
}

/** The job's failure, once it has ended. */
async function failureOf(jobId: string): Promise<{ code: string; message: string }> {
  let failure: { code: string; message: string } | undefined;
  await until(
    async () => {
      failure = (await producer.getJob(jobId))?.failure;
      return failure !== undefined;
    },
    30_000,
    `job ${jobId} to end`,
  );
  return failure!;
}

describe('headroom gateway killed (SIGKILL)', () => {
  it('names itself on the jobs no other caller can share, and on those only', async () => {
    const { proc, url, id } = await startGatewayProcess();
    const anthropic = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
    const gatewayOf = async (headers: Record<string, string>): Promise<unknown> => {
      const { response } = await anthropic.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: `Who waits? ${JSON.stringify(headers)}` }] }, { headers }).withResponse();
      const jobId = response.headers.get('headroom-job-id')!;
      const data = await admin.hget(`${laneKeys(PREFIX, 'normal').jobKeyPrefix}${jobId}`, 'data');
      return (JSON.parse(data!) as { gateway?: string }).gateway;
    };
    expect(await gatewayOf({})).toBe(id);
    // Shared jobs may have callers elsewhere (the SDK's retry under the same key, on another gateway).
    expect(await gatewayOf({ 'headroom-idempotency-key': 'who-waits-1' })).toBeUndefined();
    expect(await gatewayOf({ 'headroom-coalesce': 'true' })).toBeUndefined();
    proc.child.kill('SIGKILL');
    await proc.exited;
  });

  it('its stream in flight is stopped and its queued calls are never sent: every job ends CANCELLED', async () => {
    const { proc, url, id } = await startGatewayProcess();
    const anthropic = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
    const openai = new OpenAI({ apiKey: KEY, baseURL: `${url}/v1`, maxRetries: 0 });
    // 300 tokens, one every 100 ms: the stream runs 30 s unless it is stopped.
    sim.setPace({ streamTokenMs: 100 });
    try {
      const stream = anthropic.messages.stream({ model: SONNET, max_tokens: 400, messages: [{ role: 'user', content: 'A long story, please.' }] });
      const { response } = await stream.withResponse();
      const streamJob = response.headers.get('headroom-job-id')!;
      let deltas = 0;
      stream.on('text', () => {
        deltas++;
      });
      const streamEnd = stream.finalMessage().then(() => undefined, (err: unknown) => err);
      await until(() => deltas >= 5, 20_000, 'the stream to reach its client');

      // Plain calls queued behind it (the worker's one slot is the stream's), through both SDKs.
      const plain = [
        anthropic.messages.create({ model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'First question' }] }),
        anthropic.messages.create({ model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'Second question' }] }),
        openai.chat.completions.create({ model: GPT, max_completion_tokens: 64, messages: [{ role: 'user', content: 'Third question' }] }),
      ].map((call) => (call as Promise<unknown>).then(() => undefined, (err: unknown) => err));
      await until(async () => (await queued()).length === 3, 20_000, 'the plain calls to queue');
      const queuedJobs = await queued();
      const callsBefore = sim.stats().admissions.length;

      proc.child.kill('SIGKILL');
      // Cut mid-answer (the SDK says `terminated`), and before any answer: connection errors.
      expect(await streamEnd).toBeInstanceOf(Error);
      const cut = await Promise.all(plain);
      expect(cut.slice(0, 2).every((err) => err instanceof Anthropic.APIConnectionError)).toBe(true);
      expect(cut[2]).toBeInstanceOf(OpenAI.APIConnectionError);

      // The stream: withdrawn once the gateway's heartbeat lapsed, its call stopped short.
      const streamFailure = await failureOf(streamJob);
      expect(streamFailure.code).toBe('CANCELLED');
      expect(streamFailure.message).toContain(`the gateway waiting on it (${id}) is gone`);
      let admission = sim.stats().admissions.find((a) => a.streamed && a.done);
      await until(
        () => {
          admission = sim.stats().admissions.find((a) => a.streamed && a.done);
          return admission !== undefined;
        },
        20_000,
        'the stream to end at the provider',
      );
      expect(admission).toMatchObject({ model: SONNET, clientClosed: true });
      expect(admission!.outputSent).toBeLessThan(300);

      // The queued calls: withdrawn before their provider calls, none of which was made.
      for (const jobId of queuedJobs) {
        const failure = await failureOf(jobId);
        expect(failure.code).toBe('CANCELLED');
        expect(failure.message).toContain('no provider call was made');
      }
      expect(sim.stats().admissions.length).toBe(callsBefore);
      expect(await queued()).toEqual([]);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });
});
