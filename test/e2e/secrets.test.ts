/**
 * Invariant 6: provider keys never enter Redis, job data, logs, metrics or the dashboard.
 *
 * A fleet run with distinctive keys (`sk-ant-SECRET-<uuid>`, and `opaque-SECRET-<uuid>`, which
 * no pattern recognizes) through
 * both providers: successes, retries, fallbacks, and a provider (a real HTTP endpoint in front of
 * the simulator) whose errors echo the caller's key back, as misbehaving gateways do, on the
 * interactive path (in the failures' messages and in the providers' error bodies they keep for
 * the gateway to answer with) and on the batch path (batch status reads answered 401 with every
 * request header echoed, `authorization` included). Afterwards
 * every Redis key and value (each type read in full), the workers' captured logs at debug level,
 * each worker's /metrics and every dashboard surface are searched for the keys.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobFailedError, Producer, type JobHandle, type LlmJobInput } from '@headroom/producer-sdk';
import { parseConfig, type HeadroomConfigInput, createLogger } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { dumpRedis, scrapeMetrics, waitForFleet } from '../support/probes.js';
import { startMisbehavingProvider, type MisbehavingProvider, type WireMode } from '../support/misbehaving-provider.js';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startDashboard, type RunningDashboard } from '@headroom/dashboard';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const MINI = 'gpt-4.1-mini';
const PREFIX = 'secrets';
const UUID = randomUUID();
const ANTHROPIC_KEY = `sk-ant-SECRET-${UUID}`;
// Not shaped like a key on purpose: only the worker's registration of the keys it holds cuts it.
const OPENAI_KEY = `opaque-SECRET-${UUID.split('').reverse().join('')}`;
const ENV = { SECRETS_TEST_ANTHROPIC_KEY: ANTHROPIC_KEY, SECRETS_TEST_OPENAI_KEY: OPENAI_KEY, HEADROOM_LOG_LEVEL: 'debug' };
/** Any of these in any output is a leak: the keys, and the distinctive parts alone. */
const NEEDLES = [ANTHROPIC_KEY, OPENAI_KEY, UUID, UUID.split('').reverse().join('')];

let redis: EmbeddedRedis;
let admin: Redis;
let sim: Simulator;
let provider: MisbehavingProvider;
let dashboard: RunningDashboard;
let producer: Producer;
const workers: FleetProcess[] = [];
const metricsPorts: number[] = [];
const echoed = new Map<string, WireMode>();

const leaks = (text: string) => NEEDLES.filter((n) => text.includes(n));
/** Batch status reads the provider answers with a 401 echoing the request headers. */
const BATCH_ECHOES = 3;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
  sim = await startSimulator({ apiKeys: [ANTHROPIC_KEY, OPENAI_KEY], latencyMs: { min: 5, max: 30 } });
  provider = await startMisbehavingProvider(sim.url, { echoBatchReads: BATCH_ECHOES });
  const limits = { rpm: 1000, itpm: 400_000, otpm: 100_000 };
  const base = {
    redis: { prefix: PREFIX },
    providers: {
      anthropic: { baseURL: provider.url, apiKeyEnv: 'SECRETS_TEST_ANTHROPIC_KEY' },
      openai: { baseURL: `${provider.url}/v1`, apiKeyEnv: 'SECRETS_TEST_OPENAI_KEY' },
    },
    models: {
      [SONNET]: { provider: 'anthropic', limits, fallback: [HAIKU] },
      [HAIKU]: { provider: 'anthropic', limits },
      [MINI]: { provider: 'openai', limits: { rpm: 1000, tpm: 1_000_000 } },
    },
    retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 100 },
    batch: { maxWaitMs: 200, pollIntervalMs: 300 },
  } satisfies HeadroomConfigInput;
  for (const n of [1, 2]) {
    const port = await freePort();
    metricsPorts.push(port);
    workers.push(spawnWorker(writeConfig({ ...base, dispatch: { concurrency: 8, metricsPort: port } }), redis.url, `secrets-w${n}`, ENV));
  }
  await waitForFleet(redis.url, PREFIX, workers);
  dashboard = await startDashboard({ config: parseConfig(base), redisUrl: redis.url, localOnly: true, port: 0, logger: createLogger({ level: process.env.SECRETS_TEST_DASHBOARD_LOG ?? 'silent' }), env: ENV });
  producer = new Producer({ redis: redis.url, prefix: PREFIX });
});

afterAll(async () => {
  await producer?.close();
  await dashboard?.close();
  await stopAll(workers, 'SIGKILL');
  await provider?.close();
  await sim?.close();
  admin?.disconnect();
  await redis?.stop();
});

const anthropicJob = (text: string, extra: Partial<LlmJobInput> = {}): LlmJobInput =>
  ({ priority: 'HIGH', provider: 'anthropic', request: { model: SONNET, max_tokens: 32, messages: [{ role: 'user', content: text }] }, fallback: [HAIKU], ...extra }) as LlmJobInput;
const openaiJob = (text: string): LlmJobInput => ({ priority: 'NORMAL', provider: 'openai', request: { model: MINI, max_completion_tokens: 32, messages: [{ role: 'user', content: text }] } });

describe('provider keys never leave the worker', () => {
  it('runs a full fleet run through both providers, with faults and key-echoing errors', async () => {
    sim.injectFaults([
      { model: SONNET, status: 429, count: 2, retryAfterSeconds: 1 },
      { model: SONNET, status: 529, count: 3 },
      { model: HAIKU, malformed: true, count: 1 },
      { model: HAIKU, cut: true, count: 1 },
      { model: MINI, status: 500, count: 2 },
    ]);
    const handles: JobHandle[] = [];
    for (let i = 0; i < 20; i++) {
      handles.push(await producer.enqueue(anthropicJob(`question ${i}`, { tenant: `t${i % 3}`, metadata: { i }, ...(i % 5 === 0 ? { idempotencyKey: `idem-${i}` } : {}) })));
    }
    for (let i = 0; i < 10; i++) handles.push(await producer.enqueue(openaiJob(`tag ${i}`)));
    const echoes: [WireMode, LlmJobInput][] = [
      ['echo-400', anthropicJob('wire:echo-400', { fallback: [] } as Partial<LlmJobInput>)],
      ['echo-401', anthropicJob('wire:echo-401', { fallback: [] } as Partial<LlmJobInput>)],
      ['echo-429', anthropicJob('wire:echo-429', { fallback: [] } as Partial<LlmJobInput>)],
      ['echo-500-html', anthropicJob('wire:echo-500-html', { fallback: [] } as Partial<LlmJobInput>)],
      ['echo-401', openaiJob('wire:echo-401')],
      ['echo-400', openaiJob('wire:echo-400')],
    ];
    const echoHandles: JobHandle[] = [];
    for (const [mode, job] of echoes) {
      const handle = await producer.enqueue(job);
      echoed.set(handle.id, mode);
      echoHandles.push(handle);
    }

    const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 60_000 })));
    expect(results).toHaveLength(30);
    const failures = await Promise.all(echoHandles.map((h) => h.result({ timeoutMs: 60_000 }).then(() => undefined, (e: unknown) => e)));
    for (const f of failures) expect(f).toBeInstanceOf(JobFailedError);
    const reasons = (failures as JobFailedError[]).map((f) => f.reason);
    for (const r of reasons) expect(leaks(r)).toEqual([]);
    // The providers' own words survive, with the key cut out of them.
    expect(reasons).toEqual([
      'PROVIDER_REJECTED: 400 invalid_request_error: request from key [redacted] is malformed',
      'PROVIDER_REJECTED: 401 invalid_request_error: Incorrect API key provided: [redacted]. You can find your API key in your dashboard.',
      // A rate_limit_error 429 is a rate limit whatever its message says (only the provider's
      // billing codes make a spend cap): retried by the reset headers, then out of attempts.
      expect.stringMatching(/^RETRIES_EXHAUSTED: after 3 attempts, last: 429 rate_limit_error: key \[redacted\] has reached its monthly spend limit/),
      expect.stringMatching(/^RETRIES_EXHAUSTED: after 3 attempts, last: 500 /),
      'PROVIDER_REJECTED: 401 invalid_request_error: Incorrect API key provided: [redacted]. You can find your API key in your dashboard.',
      'PROVIDER_REJECTED: 400 invalid_request_error: request from key [redacted] is malformed',
    ]);

    // The providers' error bodies go with the failures (the gateway answers a refusal with its
    // body, verbatim), cut the same way. A body not of the provider's shape is not kept: the
    // OpenAI-shaped 401 to the Anthropic SDK, the HTML page.
    const bodies = (failures as JobFailedError[]).map((f) => f.failure.providerError?.body);
    expect(leaks(JSON.stringify(bodies))).toEqual([]);
    expect(bodies).toEqual([
      { type: 'error', error: { type: 'invalid_request_error', message: 'request from key [redacted] is malformed' } },
      undefined,
      { type: 'error', error: { type: 'rate_limit_error', message: 'key [redacted] has reached its monthly spend limit' } },
      undefined,
      { error: { message: 'Incorrect API key provided: [redacted]. You can find your API key in your dashboard.', type: 'invalid_request_error', code: 'invalid_api_key' } },
      { error: { type: 'invalid_request_error', message: 'request from key [redacted] is malformed' } },
    ]);

    // The keys were really in play: the simulator authenticated both, the echo endpoint saw them.
    const seen = new Set(sim.stats().admissions.map((a) => a.key));
    expect(seen.has(ANTHROPIC_KEY) && seen.has(OPENAI_KEY)).toBe(true);
    expect([...provider.hits.keys()].sort()).toEqual(['echo-400', 'echo-401', 'echo-429', 'echo-500-html']);
  });

  it('streams answers that echo the key a few characters per event: no event, joined or alone, holds it', async () => {
    const streamed = async (job: LlmJobInput) => {
      const stream = await producer.stream(job, { timeoutMs: 60_000 });
      const events: unknown[] = [];
      for await (const event of stream) events.push(event);
      return { events, result: await stream.result() };
    };
    const anthropic = await streamed({ ...anthropicJob('wire:echo-stream', { fallback: [] } as Partial<LlmJobInput>), request: { model: SONNET, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'wire:echo-stream' }] } } as LlmJobInput);
    const openai = await streamed({ priority: 'NORMAL', provider: 'openai', request: { model: MINI, max_completion_tokens: 64, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'wire:echo-stream' }] } });
    const text = (events: unknown[]) =>
      (events as { delta?: { text?: string }; choices?: { delta?: { content?: string } }[] }[]).map((e) => e.delta?.text ?? e.choices?.[0]?.delta?.content ?? '').join('');
    // The key is cut where it began: at most its first three characters left before it was known.
    expect(text(anthropic.events)).toBe(`your key is ${ANTHROPIC_KEY.slice(0, 3)}[redacted] ok`);
    expect(text(openai.events)).toBe(`your key is ${OPENAI_KEY.slice(0, 3)}[redacted] ok`);
    // Two choices whose chunks interleave: each is read on its own, so each key is seen whole.
    const two = await streamed({ priority: 'NORMAL', provider: 'openai', request: { model: MINI, max_completion_tokens: 64, n: 2, stream: true, messages: [{ role: 'user', content: 'wire:echo-stream' }] } });
    for (const index of [0, 1]) {
      const choice = (two.events as { choices?: { index: number; delta?: { content?: string } }[] }[]).map((e) => e.choices?.find((c) => c.index === index)?.delta?.content ?? '').join('');
      expect(choice).toBe(`your key is ${OPENAI_KEY.slice(0, 3)}[redacted] ok`);
    }
    for (const { events, result } of [anthropic, openai, two]) {
      expect(leaks(JSON.stringify(events))).toEqual([]);
      expect(leaks(JSON.stringify(result.response))).toEqual([]);
    }
    expect(provider.hits.get('echo-stream')).toBe(3);
  });

  it('cuts a key an answer spells again in its logprobs, token by token, plain and streamed', async () => {
    type Entry = { token: string; bytes: number[]; top_logprobs: { token: string; bytes: number[] }[] };
    const spelled = (entries: Entry[]) => [
      entries.map((e) => e.token).join(''),
      entries.map((e) => e.top_logprobs[0]?.token ?? '').join(''),
      String.fromCharCode(...entries.flatMap((e) => e.bytes)),
      String.fromCharCode(...entries.flatMap((e) => e.top_logprobs[0]?.bytes ?? [])),
    ];
    const request = { model: MINI, max_completion_tokens: 64, logprobs: true, top_logprobs: 1, messages: [{ role: 'user' as const, content: 'wire:echo-logprobs' }] };
    const plain = await producer.run({ priority: 'NORMAL', provider: 'openai', request }, { timeoutMs: 60_000 });
    const plainEntries = (plain.response as { choices: { logprobs: { content: Entry[] } }[] }).choices[0]!.logprobs.content;
    const stream = await producer.stream({ priority: 'NORMAL', provider: 'openai', request: { ...request, stream: true } }, { timeoutMs: 60_000 });
    const events: unknown[] = [];
    for await (const event of stream) events.push(event);
    const streamed = await stream.result();
    const eventEntries = (events as { choices?: { logprobs?: { content?: Entry[] } | null }[] }[]).flatMap((e) => e.choices?.[0]?.logprobs?.content ?? []);
    expect(eventEntries.length).toBeGreaterThan(5);
    for (const text of [...spelled(plainEntries), ...spelled(eventEntries)]) {
      expect(text).toContain('your key is');
      expect(text).toContain('[redacted]');
      expect(text).not.toContain(OPENAI_KEY.slice(0, 4));
    }
    // The stored results, the stream's put together by the worker, hold them cut too.
    for (const result of [plain, streamed]) expect(JSON.stringify(result.response)).not.toContain(OPENAI_KEY.slice(0, 4));
    expect(provider.hits.get('echo-logprobs')).toBe(2);
  });

  it('keeps the key out of a stream whose error event echoes it, a request id that is it, and a Responses stream that spells it', async () => {
    // Part of an answer, then the provider's error event quoting the key: the client has that part,
    // so the event is relayed as the stream's end and the job fails STREAM_FAILED with its message.
    const failing: LlmJobInput[] = [
      { priority: 'HIGH', provider: 'anthropic', fallback: [], request: { model: HAIKU, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'wire:echo-stream-error' }] } } as LlmJobInput,
      { priority: 'NORMAL', provider: 'openai', request: { model: MINI, max_completion_tokens: 64, stream: true, messages: [{ role: 'user', content: 'wire:echo-stream-error' }] } },
    ];
    for (const job of failing) {
      const stream = await producer.stream(job, { timeoutMs: 60_000 });
      const events: unknown[] = [];
      const thrown = await (async () => {
        for await (const event of stream) events.push(event);
      })().then(() => undefined, (e: unknown) => e);
      const ended = await stream.result().then(() => undefined, (e: unknown) => e);
      expect(ended).toBeInstanceOf(JobFailedError);
      const failed = ended as JobFailedError;
      expect(failed.failureCode).toBe('STREAM_FAILED');
      expect(failed.reason).toContain('upstream failure for key [redacted]');
      expect(JSON.stringify(events)).toContain('part of an answer');
      expect(leaks(`${JSON.stringify(events)} ${String(thrown)} ${failed.reason} ${JSON.stringify(failed.failure)}`)).toEqual([]);
    }
    // The provider's request id, which a result keeps and the gateway relays, is the key itself.
    const plain = await producer.run(anthropicJob('wire:echo-request-id', { fallback: [] } as Partial<LlmJobInput>), { timeoutMs: 60_000 });
    expect(plain.providerRequestId).toBe('req_[redacted]');
    expect(leaks(JSON.stringify(plain))).toEqual([]);
    // A Responses stream spelling the key three characters per delta.
    const responses = await producer.stream({ priority: 'NORMAL', provider: 'openai', api: 'responses', request: { model: MINI, max_output_tokens: 64, stream: true, input: 'wire:echo-stream' } }, { timeoutMs: 60_000 });
    const events: unknown[] = [];
    for await (const event of responses) events.push(event);
    const result = await responses.result();
    const deltas = (events as { type: string; delta?: string }[]).filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
    expect(deltas).toBe(`your key is ${OPENAI_KEY.slice(0, 3)}[redacted] ok`);
    expect(leaks(JSON.stringify(events))).toEqual([]);
    expect(leaks(JSON.stringify(result))).toEqual([]);
    expect(provider.hits.get('echo-stream-error')).toBe(2);
    expect(provider.hits.get('echo-request-id')).toBe(1);
  });

  it('runs batch jobs while the provider echoes the request headers on batch status reads', async () => {
    const batchJobs: LlmJobInput[] = [
      { priority: 'LOW', sla: 'none', provider: 'anthropic', request: { model: HAIKU, max_tokens: 16, messages: [{ role: 'user', content: 'batch a' }] } },
      { priority: 'LOW', sla: 'none', provider: 'openai', request: { model: MINI, max_completion_tokens: 16, messages: [{ role: 'user', content: 'batch b' }] } },
    ];
    const handles = await Promise.all(batchJobs.map((j) => producer.enqueue(j)));
    const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 90_000 })));
    for (const r of results) expect(r.cost.batch).toBe(true);
    // The echoing answers were given, and the batcher logged them on its retry path.
    expect(provider.hits.get('echo-batch-read')).toBe(BATCH_ECHOES);
    expect(workers.map((w) => w.output()).join('\n')).toContain('batch step failed; retrying');
  });

  it('left no key in any Redis key or value (strings, hashes, lists, sets, zsets, streams)', async () => {
    const dump = await dumpRedis(admin);
    const types = new Set(dump.map((d) => d.type));
    // The scan saw the variety of what the fleet writes (lists too, while jobs wait: none now).
    for (const t of ['string', 'hash', 'zset', 'stream']) expect(types).toContain(t);
    const found = dump.filter((d) => leaks(d.key).length > 0 || leaks(d.text).length > 0).map((d) => d.key);
    expect(found).toEqual([]);
    // The echoing jobs' stored failure (reason, stack trace, progress) is scrubbed too, and says so.
    const failedJobs = dump.filter((d) => d.type === 'hash' && [...echoed.keys()].some((id) => d.key.endsWith(`:${id}`)));
    expect(failedJobs).toHaveLength(echoed.size);
    expect(failedJobs.filter((d) => d.text.includes('[redacted]')).length).toBeGreaterThanOrEqual(4);
  });

  it('left no key in the workers\' logs (debug level, stdout and stderr)', () => {
    const logs = workers.map((w) => w.output()).join('\n');
    expect(logs).toContain('worker started');
    expect(logs).toContain('provider call failed');
    expect(leaks(logs)).toEqual([]);
  });

  it('shows no key in any worker\'s /metrics', async () => {
    for (const port of metricsPorts) {
      const text = await scrapeMetrics(port);
      expect(text).toContain('headroom_provider_calls_total');
      expect(leaks(text)).toEqual([]);
    }
  });

  it('shows no key anywhere on the dashboard (page data, recent jobs, metrics, Bull Board)', async () => {
    const get = async (path: string) => {
      const res = await fetch(`${dashboard.url}${path}`);
      const body = await res.text();
      expect(res.status, `${path}: ${body}`).toBe(200);
      return body;
    };
    const bodies = [await get('/api/overview'), await get('/api/recent-jobs'), await get('/metrics')];
    const board = JSON.parse(await get('/admin/queues/api/queues')) as { queues: { name: string }[] };
    for (const q of board.queues) {
      for (const status of ['completed', 'failed']) {
        bodies.push(await get(`/admin/queues/api/queues?activeQueue=${encodeURIComponent(q.name)}&status=${status}&page=1&jobsPerPage=50`));
      }
    }
    const all = bodies.join('\n');
    // The board did show the failed jobs, scrubbed.
    expect(all).toContain('[redacted]');
    expect(leaks(all)).toEqual([]);
  });
});
