/**
 * Invariant 5, table-driven: every class of bad input is refused with a stable code and a message
 * that says what is wrong, and nothing is half-written.
 *
 * - jobs (shape, types, sizes, models the fleet does not serve, caps and quotas): Producer.enqueue
 *   throws, and every key under the prefix, with its value, is exactly as before;
 * - config files (YAML syntax, types, unknown keys, fallbacks, secrets in the file): loadConfig
 *   throws CONFIG_INVALID listing each problem by path, never echoing a secret;
 * - environment and CLI (`headroom worker` and friends as real processes): exit code 2 with the
 *   message, no stack trace, nothing written to Redis;
 * - garbage on the wire (a provider answering malformed JSON, HTML pages, a 200 missing fields):
 *   the job fails with a reason saying so, and the worker process keeps serving.
 */
import { writeFileSync, mkdtempSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError as ProducerConfigError, HeadroomError, JobFailedError, Producer, type FailureCode, type LlmJobInput, type ProducerOptions } from '@headroom/producer-sdk';
import { ConfigError, createLogger, laneKeys, loadConfig, parseConfig, publishFleetSettings, type HeadroomConfigInput } from '@headroom/queue';
import { startGateway } from '@headroom/gateway';
import { Queue } from 'bullmq';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { spawnHeadroom, spawnWorker, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { dumpRedis, keysUnder, waitForFleet } from '../support/probes.js';
import { startMisbehavingProvider, type MisbehavingProvider, type WireMode } from '../support/misbehaving-provider.js';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const MINI = 'gpt-4.1-mini';
const PREFIX = 'bad';
/** Shaped like a real key, so a leak would be caught by shape as well as by value. */
const PASTED_KEY = 'sk-ant-api03-PASTEDpastedPASTEDpasted0123456789abcdefABCDEF';

let redis: EmbeddedRedis;
let admin: Redis;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
});
afterAll(async () => {
  admin?.disconnect();
  await redis?.stop();
});

// ---- jobs ----------------------------------------------------------------------------------

const valid = {
  priority: 'HIGH',
  provider: 'anthropic',
  request: { model: SONNET, max_tokens: 64, messages: [{ role: 'user', content: 'Summarise this ticket.' }] },
} as const;
const openai = { priority: 'HIGH', provider: 'openai', request: { model: MINI, max_completion_tokens: 64, messages: [{ role: 'user', content: 'Tag this.' }] } } as const;
const withRequest = (request: Record<string, unknown>) => ({ ...valid, request: { ...valid.request, ...request } });
const without = <T extends object>(obj: T, key: keyof T) => Object.fromEntries(Object.entries(obj).filter(([k]) => k !== key));

interface JobCase {
  name: string;
  job: unknown;
  code: string;
  /** A fragment of the message. */
  says: string | RegExp;
  /** The issue's path, for JOB_INVALID. */
  path?: string;
  producer?: 'small';
}

const JOB_CASES: JobCase[] = [
  { name: 'null instead of a job', job: null, code: 'JOB_INVALID', says: 'expected a job (an object), got null' },
  { name: 'a string instead of a job', job: 'summarise this', code: 'JOB_INVALID', says: 'expected a job (an object), got string' },
  { name: 'an array instead of a job', job: [valid], code: 'JOB_INVALID', says: 'expected a job (an object), got an array' },
  { name: 'missing priority', job: without(valid, 'priority'), code: 'JOB_INVALID', path: 'priority', says: 'expected CRITICAL, HIGH, NORMAL or LOW' },
  { name: 'lower-case priority', job: { ...valid, priority: 'high' }, code: 'JOB_INVALID', path: 'priority', says: 'got "high"' },
  { name: 'numeric priority', job: { ...valid, priority: 1 }, code: 'JOB_INVALID', path: 'priority', says: 'expected CRITICAL, HIGH, NORMAL or LOW' },
  { name: 'missing provider', job: without(valid, 'provider'), code: 'JOB_INVALID', path: 'provider', says: 'expected "anthropic" or "openai"' },
  { name: 'unknown provider', job: { ...valid, provider: 'google' }, code: 'JOB_INVALID', path: 'provider', says: 'expected "anthropic" or "openai"' },
  { name: 'missing request', job: without(valid, 'request'), code: 'JOB_INVALID', path: 'request', says: 'request' },
  { name: 'request is a string', job: { ...valid, request: 'Summarise this ticket.' }, code: 'JOB_INVALID', path: 'request', says: 'request' },
  { name: 'missing model', job: { ...valid, request: without(valid.request, 'model') }, code: 'JOB_INVALID', path: 'request.model', says: 'expected a string' },
  { name: 'empty model', job: withRequest({ model: '' }), code: 'JOB_INVALID', path: 'request.model', says: 'must not be empty' },
  { name: 'numeric model', job: withRequest({ model: 4 }), code: 'JOB_INVALID', path: 'request.model', says: 'expected a string' },
  { name: 'missing max_tokens (Anthropic)', job: { ...valid, request: without(valid.request, 'max_tokens') }, code: 'JOB_INVALID', path: 'request.max_tokens', says: 'expected a positive integer' },
  { name: 'max_tokens 0', job: withRequest({ max_tokens: 0 }), code: 'JOB_INVALID', path: 'request.max_tokens', says: 'expected a positive integer' },
  { name: 'negative max_tokens', job: withRequest({ max_tokens: -5 }), code: 'JOB_INVALID', path: 'request.max_tokens', says: 'got -5' },
  { name: 'fractional max_tokens', job: withRequest({ max_tokens: 1.5 }), code: 'JOB_INVALID', path: 'request.max_tokens', says: 'expected a positive integer' },
  { name: 'max_tokens as a string', job: withRequest({ max_tokens: '64' }), code: 'JOB_INVALID', path: 'request.max_tokens', says: 'got "64"' },
  { name: 'no messages', job: withRequest({ messages: [] }), code: 'JOB_INVALID', path: 'request.messages', says: 'must not be empty' },
  { name: 'messages is a string', job: withRequest({ messages: 'hello' }), code: 'JOB_INVALID', path: 'request.messages', says: 'expected an array of messages' },
  { name: 'system role inside Anthropic messages', job: withRequest({ messages: [{ role: 'system', content: 'x' }] }), code: 'JOB_INVALID', path: 'request.messages.0.role', says: 'expected "user" or "assistant"' },
  { name: 'empty message content', job: withRequest({ messages: [{ role: 'user', content: '' }] }), code: 'JOB_INVALID', path: 'request.messages.0.content', says: 'must not be empty' },
  { name: 'content block without a type', job: withRequest({ messages: [{ role: 'user', content: [{ url: 'x' }] }] }), code: 'JOB_INVALID', path: 'request.messages.0.content.0.type', says: 'expected a string' },
  { name: 'unknown key in a message', job: withRequest({ messages: [{ role: 'user', content: 'x', name: 'bob' }] }), code: 'JOB_INVALID', path: 'request.messages.0', says: 'unknown key "name"' },
  { name: 'temperature out of range (Anthropic)', job: withRequest({ temperature: 1.5 }), code: 'JOB_INVALID', path: 'request.temperature', says: 'got 1.5' },
  { name: 'streaming with sla none', job: { ...withRequest({ stream: true }), sla: 'none' }, code: 'JOB_INVALID', path: 'request.stream', says: 'a streamed job must be interactive' },
  { name: 'stream as a string', job: withRequest({ stream: 'yes' }), code: 'JOB_INVALID', path: 'request.stream', says: 'expected true or false' },
  { name: 'OpenAI body without an output bound', job: { ...openai, request: without(openai.request, 'max_completion_tokens') }, code: 'JOB_INVALID', path: 'request.max_completion_tokens', says: 'set max_completion_tokens (or max_tokens)' },
  { name: 'OpenAI body with both output bounds', job: { ...openai, request: { ...openai.request, max_tokens: 10 } }, code: 'JOB_INVALID', path: 'request.max_tokens', says: 'at the same time is not supported: set only one' },
  { name: 'OpenAI unknown role', job: { ...openai, request: { ...openai.request, messages: [{ role: 'robot', content: 'x' }] } }, code: 'JOB_INVALID', path: 'request.messages.0.role', says: 'expected role' },
  { name: 'unknown top-level key', job: { ...valid, callbackUrl: 'https://example.com' }, code: 'JOB_INVALID', says: 'unknown key "callbackUrl"' },
  { name: 'tenant with spaces', job: { ...valid, tenant: 'acme corp' }, code: 'JOB_INVALID', path: 'tenant', says: 'expected 1-128 characters' },
  { name: 'empty idempotency key', job: { ...valid, idempotencyKey: '' }, code: 'JOB_INVALID', path: 'idempotencyKey', says: 'idempotencyKey' },
  { name: 'fallback is a string', job: { ...valid, fallback: HAIKU }, code: 'JOB_INVALID', path: 'fallback', says: 'fallback' },
  { name: 'fallback ladder too long', job: { ...valid, fallback: Array(9).fill(HAIKU) }, code: 'JOB_INVALID', path: 'fallback', says: 'fallback' },
  { name: 'negative maxWaitMs', job: { ...valid, maxWaitMs: -1 }, code: 'JOB_INVALID', path: 'maxWaitMs', says: 'expected a positive integer' },
  { name: 'unknown onShed', job: { ...valid, onShed: 'drop' }, code: 'JOB_INVALID', path: 'onShed', says: 'onShed' },
  { name: 'unknown sla', job: { ...valid, sla: 'urgent' }, code: 'JOB_INVALID', path: 'sla', says: 'sla' },
  { name: 'coalesce as a string', job: { ...valid, coalesce: 'yes' }, code: 'JOB_INVALID', path: 'coalesce', says: 'coalesce' },
  { name: 'a lone surrogate in a prompt (the providers refuse the request for it)', job: withRequest({ messages: [{ role: 'user', content: 'cut \ud83d' }] }), code: 'JOB_INVALID', path: 'request.messages.0.content', says: 'this text holds a lone surrogate (\\ud83d at character 4)' },
  { name: 'metadata as an array', job: { ...valid, metadata: [1, 2] }, code: 'JOB_INVALID', path: 'metadata', says: 'metadata' },
  { name: 'several bad fields at once (all reported)', job: { priority: 'URGENT', provider: 'anthropic', request: { model: '', max_tokens: 0, messages: [] } }, code: 'JOB_INVALID', says: /priority: .*request\.model: .*request\.max_tokens: .*request\.messages: /s },
  { name: 'oversized payload (2 MiB prompt)', job: withRequest({ messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] }), code: 'PAYLOAD_TOO_LARGE', says: /job is \d+ bytes serialized, over the limit of 1048576 bytes/ },
  { name: 'oversized for a producer with a lower maxJobBytes', job: withRequest({ messages: [{ role: 'user', content: 'x'.repeat(5_000) }] }), code: 'PAYLOAD_TOO_LARGE', says: 'over the limit of 4096 bytes', producer: 'small' },
  { name: 'unknown model (fleet settings published)', job: withRequest({ model: 'claude-nope-9' }), code: 'JOB_INVALID', path: 'request.model', says: `unknown model "claude-nope-9": the fleet's config has no such model` },
  { name: 'unknown fallback model', job: { ...valid, fallback: ['claude-nope-9'] }, code: 'JOB_INVALID', path: 'fallback', says: 'unknown model "claude-nope-9"' },
  { name: 'provider/model mismatch (anthropic job, OpenAI model)', job: withRequest({ model: MINI }), code: 'JOB_INVALID', path: 'request.model', says: `"${MINI}" is an openai model, not anthropic` },
  { name: 'provider/model mismatch (OpenAI job, Anthropic model)', job: { ...openai, request: { ...openai.request, model: HAIKU } }, code: 'JOB_INVALID', path: 'request.model', says: `"${HAIKU}" is an anthropic model, not openai` },
  { name: 'fallback on another provider', job: { ...valid, fallback: [MINI] }, code: 'JOB_INVALID', path: 'fallback', says: `"${MINI}" is an openai model` },
  { name: 'lane at its cap (CRITICAL holds 2)', job: { ...valid, priority: 'CRITICAL' }, code: 'QUEUE_FULL', says: 'lane critical is full (cap 2 jobs not yet started)' },
  { name: 'tenant over its max queued jobs', job: { ...valid, priority: 'NORMAL', tenant: 'greedy' }, code: 'QUOTA_EXCEEDED', says: /^tenant greedy is over its max \w+ jobs in lane normal quota \(1\)/ },
];

describe('bad jobs are refused at enqueue with nothing written', () => {
  let producer: Producer;
  let small: Producer;

  beforeAll(async () => {
    // What a fleet publishes at start: its models, lane caps and tenant quotas.
    await publishFleetSettings(admin, parseConfig({
      redis: { prefix: PREFIX },
      models: { [SONNET]: { provider: 'anthropic' }, [HAIKU]: { provider: 'anthropic' }, [MINI]: { provider: 'openai' } },
      lanes: { critical: { cap: 2 } },
      tenants: { overrides: { greedy: { maxQueued: 1 } } },
    }));
    producer = new Producer({ redis: redis.url, prefix: PREFIX });
    small = new Producer({ redis: redis.url, prefix: PREFIX, maxJobBytes: 4096 });
    // Fill the CRITICAL lane to its cap, and tenant greedy to its quota: no worker takes them.
    await producer.enqueue({ ...valid, priority: 'CRITICAL' });
    await producer.enqueue({ ...valid, priority: 'CRITICAL' });
    await producer.enqueue({ ...valid, priority: 'NORMAL', tenant: 'greedy' });
  });
  afterAll(async () => {
    await producer?.close();
    await small?.close();
  });

  it.each(JOB_CASES)('$name -> $code', async (c) => {
    const before = await dumpRedis(admin, `{${PREFIX}:*`);
    const err = await (c.producer === 'small' ? small : producer).enqueue(c.job as LlmJobInput).then(() => undefined, (e: unknown) => e);
    expect(err, 'refused').toBeInstanceOf(HeadroomError);
    const e = err as HeadroomError & { issues?: { path: string; message: string }[] };
    expect(e.code).toBe(c.code);
    if (typeof c.says === 'string') expect(e.message).toContain(c.says);
    else expect(e.message).toMatch(c.says);
    if (c.path !== undefined) expect(e.issues?.map((i) => i.path)).toContain(c.path);
    // Nothing half-written: every key under the prefix, and every value, as before.
    const after = await dumpRedis(admin, `{${PREFIX}:*`);
    expect(after.sort((a, b) => a.key.localeCompare(b.key))).toEqual(before.sort((a, b) => a.key.localeCompare(b.key)));
  });

  it('accepts the valid job the cases were built from (the table tests the mutations, not the base)', async () => {
    const keys = (await keysUnder(admin, PREFIX)).length;
    const handle = await producer.enqueue(valid);
    expect(handle.id).toMatch(/^high/);
    expect((await keysUnder(admin, PREFIX)).length).toBeGreaterThan(keys);
    expect(await producer.cancel(handle.id)).toBe(true);
  });
});

// ---- config files ----------------------------------------------------------------------------

const MODELS_OK = `models:\n  ${SONNET}: { provider: anthropic, limits: { rpm: 50 } }\n`;

interface ConfigCase {
  name: string;
  yaml: string;
  path: string;
  says: string;
  /** Must not appear anywhere in the error. */
  secret?: string;
  /** A line of the error's message, as printed. */
  printed?: string;
}

const CONFIG_CASES: ConfigCase[] = [
  { name: 'YAML syntax error (unclosed flow map)', yaml: `models:\n  ${SONNET}: { provider: anthropic\n`, path: '(yaml line', says: '' },
  { name: 'YAML bad indentation', yaml: `models:\n  ${SONNET}:\n    provider: anthropic\n   limits: { rpm: 5 }\n`, path: '(yaml line', says: '' },
  { name: 'duplicate key', yaml: `${MODELS_OK}dispatch: { concurrency: 4 }\ndispatch: { concurrency: 8 }\n`, path: '(yaml line', says: 'unique' },
  { name: 'empty file', yaml: '', path: '(file)', says: 'the file is empty' },
  { name: 'a file of comments only', yaml: '# models: to come\n', path: '(file)', says: 'the file is empty (or holds only comments)' },
  { name: 'a list at the top level', yaml: '- models\n- lanes\n', path: '', says: 'expected the config: a mapping of sections (models:, lanes:, dispatch:, ...), got an array' },
  { name: 'missing models', yaml: 'dispatch: { concurrency: 4 }\n', path: 'models', says: 'required: the models the fleet serves' },
  { name: 'no models at all (models: {})', yaml: 'models: {}\n', path: 'models', says: 'lists no model' },
  { name: 'unknown top-level key', yaml: `${MODELS_OK}workers: 3\n`, path: '', says: 'unknown key "workers"', printed: '(top level): unknown key "workers"' },
  { name: 'a model name with a space', yaml: `models:\n  claude sonnet: { provider: anthropic }\n`, path: 'models.claude sonnet', says: 'expected a model name of 1-64 letters, digits, . : _ -' },
  { name: 'a bad redis.prefix', yaml: `${MODELS_OK}redis: { prefix: "hr:prod" }\n`, path: 'redis.prefix', says: 'expected 1-32 letters, digits, _ or -, got "hr:prod"' },
  { name: 'misspelt nested key', yaml: `${MODELS_OK}dispatch: { concurency: 4 }\n`, path: 'dispatch', says: 'unknown key "concurency"' },
  { name: 'unknown provider for a model', yaml: `models:\n  gemini-2: { provider: google }\n`, path: 'models.gemini-2.provider', says: 'expected "anthropic" or "openai"' },
  { name: 'negative limit', yaml: `models:\n  ${SONNET}: { provider: anthropic, limits: { itpm: -5 } }\n`, path: `models.${SONNET}.limits.itpm`, says: 'expected a positive integer, got -5' },
  { name: 'limit as a string', yaml: `models:\n  ${SONNET}: { provider: anthropic, limits: { rpm: fast } }\n`, path: `models.${SONNET}.limits.rpm`, says: 'got "fast"' },
  { name: 'Anthropic dimensions on an OpenAI model', yaml: `models:\n  ${MINI}: { provider: openai, limits: { itpm: 1000 } }\n`, path: `models.${MINI}.limits`, says: 'OpenAI limits are rpm and tpm' },
  { name: 'OpenAI dimension on an Anthropic model', yaml: `models:\n  ${SONNET}: { provider: anthropic, limits: { tpm: 1000 } }\n`, path: `models.${SONNET}.limits.tpm`, says: 'Anthropic limits are rpm, itpm and otpm' },
  { name: 'fallback to an unknown model', yaml: `models:\n  ${SONNET}: { provider: anthropic, fallback: [claude-nope] }\n`, path: `models.${SONNET}.fallback.0`, says: 'unknown model "claude-nope" (not under models)' },
  { name: 'fallback to the model itself', yaml: `models:\n  ${SONNET}: { provider: anthropic, fallback: [${SONNET}] }\n`, path: `models.${SONNET}.fallback.0`, says: 'is the model itself' },
  { name: 'the same fallback twice', yaml: `models:\n  ${SONNET}: { provider: anthropic, fallback: [${HAIKU}, ${HAIKU}] }\n  ${HAIKU}: { provider: anthropic }\n`, path: `models.${SONNET}.fallback.1`, says: 'is already listed (fallback.0)' },
  { name: 'a request limit no lane can draw one call from', yaml: `models:\n  ${SONNET}: { provider: anthropic, limits: { rpm: 2, burst: 1 } }\n`, path: `models.${SONNET}.limits`, says: 'rpm 2 x burst 1 / 60 = 0.03 requests fit' },
  { name: 'retry ceiling below its base', yaml: `${MODELS_OK}retry: { baseDelayMs: 2000, maxDelayMs: 1000 }\n`, path: 'retry.maxDelayMs', says: 'is below retry.baseDelayMs (2000)' },
  { name: 'a tenant override no job can name', yaml: `${MODELS_OK}tenants: { overrides: { "acme corp": { tpm: 100 } } }\n`, path: 'tenants.overrides.acme corp', says: 'expected 1-128 characters of letters, digits' },
  { name: 'a lock shorter than its renewal allows', yaml: `${MODELS_OK}dispatch: { lockMs: 500 }\n`, path: 'dispatch.lockMs', says: 'expected at least 1000' },
  { name: 'weighted order with every weight 0', yaml: `${MODELS_OK}dispatch: { order: weighted }\nlanes: { critical: { weight: 0 }, high: { weight: 0 }, normal: { weight: 0 }, low: { weight: 0 } }\n`, path: 'lanes', says: 'every lane has weight 0' },
  { name: 'fallback across providers', yaml: `models:\n  ${SONNET}: { provider: anthropic, fallback: [${MINI}] }\n  ${MINI}: { provider: openai }\n`, path: `models.${SONNET}.fallback.0`, says: 'a fallback must use the same provider' },
  { name: 'lane cap 0', yaml: `${MODELS_OK}lanes: { high: { cap: 0 } }\n`, path: 'lanes.high.cap', says: 'expected a positive integer' },
  { name: 'unknown lane', yaml: `${MODELS_OK}lanes: { urgent: { cap: 5 } }\n`, path: 'lanes', says: 'unknown key "urgent"' },
  { name: 'unknown dispatch order', yaml: `${MODELS_OK}dispatch: { order: random }\n`, path: 'dispatch.order', says: 'got "random"' },
  { name: 'shedding threshold above 1', yaml: `${MODELS_OK}shedding: { lowAt: 1.5 }\n`, path: 'shedding.lowAt', says: 'expected a number from 0 to 1' },
  { name: 'baseURL that is not a URL', yaml: `${MODELS_OK}providers: { anthropic: { baseURL: not-a-url } }\n`, path: 'providers.anthropic.baseURL', says: 'expected an http:// or https:// URL' },
  { name: 'metrics port out of range', yaml: `${MODELS_OK}dispatch: { metricsPort: 70000 }\n`, path: 'dispatch.metricsPort', says: '70000' },
  { name: 'secret: API key in the file', yaml: `${MODELS_OK}providers: { anthropic: { apiKey: ${PASTED_KEY} } }\n`, path: 'providers.anthropic', says: 'unknown key "apiKey"', secret: PASTED_KEY },
  { name: 'secret: API key pasted where the env variable name goes', yaml: `${MODELS_OK}providers: { anthropic: { apiKeyEnv: ${PASTED_KEY} } }\n`, path: 'providers.anthropic.apiKeyEnv', says: 'expected an environment variable name', secret: PASTED_KEY },
  { name: 'secret: password in redis.url', yaml: `${MODELS_OK}redis: { url: "redis://:hunter2-pw@redis.internal:6379" }\n`, path: 'redis.url', says: 'contains a password: keep secrets out of the file and set REDIS_URL instead', secret: 'hunter2-pw' },
  { name: 'secret: password in a redis.url of the wrong scheme', yaml: `${MODELS_OK}redis: { url: "redis-cluster://:hunter2-pw@node-1:6379" }\n`, path: 'redis.url', says: 'contains a password', secret: 'hunter2-pw' },
  { name: 'a file that does not exist', yaml: '(missing)', path: '(file)', says: 'cannot read: ENOENT' },
];

describe('bad config files are refused with every problem by path', () => {
  it.each(CONFIG_CASES)('$name', (c) => {
    const file = c.yaml === '(missing)' ? join(tmpdir(), 'headroom-no-such-dir', 'headroom.config.yaml') : join(mkdtempSync(join(tmpdir(), 'headroom-bad-')), 'headroom.config.yaml');
    if (c.yaml !== '(missing)') writeFileSync(file, c.yaml);
    let err: unknown;
    try {
      loadConfig(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toContain(`invalid config ${file}`);
    const issue = e.issues.find((i) => i.path.startsWith(c.path) && i.message.includes(c.says));
    expect(issue, `an issue at ${c.path} saying "${c.says}" in:\n${e.message}`).toBeDefined();
    if (c.secret) expect(e.message).not.toContain(c.secret);
    if (c.printed) expect(e.message.split('\n')).toContain(`  ${c.printed}`);
  });
});

// ---- environment and CLI ----------------------------------------------------------------------

interface CliContext {
  config: string;
  redisUrl: string;
  /** A port another process listens on (all addresses). */
  busyPort: number;
  /** A config whose worker /metrics port is `busyPort`, with a gateway key (its own prefix: its worker writes). */
  busyConfig: string;
  /** A config whose gateway /metrics port is `busyPort` (loopback), with a gateway key. */
  busyMetricsConfig: string;
}

interface CliCase {
  name: string;
  args: (ctx: CliContext) => string[];
  env?: NodeJS.ProcessEnv;
  exit: number;
  says: string | ((ctx: CliContext) => string);
  secret?: string;
  /** The prefix the command must not write under. */
  untouched?: string;
}

const CLI_KEY_ENV = 'BAD_INPUT_ANTHROPIC_KEY';

const CLI_CASES: CliCase[] = [
  { name: 'missing API key env variable for a configured provider', args: ({ config, redisUrl }) => ['worker', '--config', config, '--redis', redisUrl], env: { [CLI_KEY_ENV]: '' }, exit: 2, says: `environment variable ${CLI_KEY_ENV} is not set (needed by ${SONNET})`, untouched: 'clikey' },
  { name: 'missing REDIS_URL', args: ({ config }) => ['worker', '--config', config], env: { REDIS_URL: '', [CLI_KEY_ENV]: 'sk-bad-input' }, exit: 2, says: 'no Redis URL: set REDIS_URL or redis.url in' },
  { name: 'REDIS_URL without a scheme', args: ({ config }) => ['worker', '--config', config], env: { REDIS_URL: 'localhost:6379', [CLI_KEY_ENV]: 'sk-bad-input' }, exit: 2, says: 'invalid Redis URL: expected redis://, rediss://, redis-cluster:// or rediss-cluster://' },
  { name: 'REDIS_URL with a bad port (password not echoed)', args: ({ config }) => ['worker', '--config', config], env: { REDIS_URL: 'redis://:hunter2-pw@127.0.0.1:notaport', [CLI_KEY_ENV]: 'sk-bad-input' }, exit: 2, says: 'invalid Redis URL: not a valid URL', secret: 'hunter2-pw' },
  { name: 'malformed --redis flag for status', args: ({ config }) => ['status', '--config', config, '--redis', 'redis-cluster://'], exit: 2, says: 'invalid Redis URL: a cluster URL needs at least one host:port' },
  { name: 'bad config file through the CLI', args: () => ['worker', '--config', writeBadConfig()], exit: 2, says: 'expected a positive integer, got -5' },
  { name: 'config file that does not exist', args: () => ['worker', '--config', '/nonexistent/headroom.config.yaml'], exit: 2, says: 'cannot read: ENOENT' },
  { name: 'unknown flag', args: ({ config }) => ['worker', '--config', config, '--concurrency', '5'], exit: 2, says: "Unknown option '--concurrency'" },
  { name: 'flag without its value', args: () => ['worker', '--redis'], exit: 2, says: "Option '--redis <value>' argument missing" },
  { name: 'unknown command', args: () => ['wrker'], exit: 2, says: 'usage: headroom <command>' },
  { name: 'non-numeric --duration for demo', args: () => ['demo', '--duration', 'ten'], exit: 2, says: '--duration expects a positive number, got "ten"' },
  { name: 'dashboard port out of range', args: ({ config, redisUrl }) => ['dashboard', '--config', config, '--redis', redisUrl, '--port', '70000'], exit: 2, says: '--port: expected 0-65535, got 70000' },
  // Started silently with ./headroom.config.yaml before, the file given ignored.
  { name: 'a config file given without --config', args: ({ config }) => ['worker', config], exit: 2, says: "headroom worker: unexpected argument '" },
  // Ran status (exit 0) before, the demo's flags ignored.
  { name: "another command's flags", args: ({ config, redisUrl }) => ['status', '--config', config, '--redis', redisUrl, '--workers', '9', '--check'], exit: 2, says: 'headroom status: --workers is not a flag of status (it is one of headroom demo)' },
  { name: '--help', args: () => ['--help'], exit: 0, says: 'usage: headroom <command>' },
  { name: '-h after a command', args: () => ['gateway', '-h'], exit: 0, says: 'usage: headroom <command>' },
  // A pino stack and exit 1 before.
  { name: 'an unknown HEADROOM_LOG_LEVEL', args: ({ config, redisUrl }) => ['worker', '--config', config, '--redis', redisUrl], env: { HEADROOM_LOG_LEVEL: 'verbose', [CLI_KEY_ENV]: 'sk-bad-input' }, exit: 2, says: 'HEADROOM_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"' },
  // Each a raw `Error: listen EADDRINUSE` stack and exit 1 before.
  { name: 'the gateway on a port in use', args: ({ busyConfig, redisUrl, busyPort }) => ['gateway', '--config', busyConfig, '--redis', redisUrl, '--port', String(busyPort)], env: { BAD_INPUT_GATEWAY_KEY: 'hr-gw-bad-input-key-0123456789' }, exit: 2, says: ({ busyPort }) => `the gateway cannot listen on 0.0.0.0:${busyPort}: the address is already in use; choose another with --port` },
  { name: 'the dashboard on a port in use', args: ({ config, redisUrl, busyPort }) => ['dashboard', '--config', config, '--redis', redisUrl, '--local-only', '--port', String(busyPort)], exit: 2, says: ({ busyPort }) => `the dashboard cannot listen on 127.0.0.1:${busyPort}: the address is already in use; choose another with --port` },
  // The gateway listened first, and took calls until the process exited over its metrics port.
  { name: "the gateway's metrics port in use", args: ({ busyMetricsConfig, redisUrl }) => ['gateway', '--config', busyMetricsConfig, '--redis', redisUrl, '--port', '0'], env: { BAD_INPUT_GATEWAY_KEY: 'hr-gw-bad-input-key-0123456789' }, exit: 2, says: ({ busyPort }) => `the gateway's /metrics server cannot listen on 127.0.0.1:${busyPort}: the address is already in use; choose another with gateway.metricsPort` },
  { name: "a worker's metrics port in use", args: ({ busyConfig, redisUrl }) => ['worker', '--config', busyConfig, '--redis', redisUrl], env: { [CLI_KEY_ENV]: 'sk-bad-input' }, exit: 2, says: ({ busyPort }) => `the worker's /metrics server cannot listen on 127.0.0.1:${busyPort}: the address is already in use; choose another with dispatch.metricsPort` },
];

/** What `new Producer(options)` threw, or undefined (a producer made is closed at once). */
function constructed(options: unknown): unknown {
  try {
    void new Producer(options as ProducerOptions).close();
    return undefined;
  } catch (e) {
    return e;
  }
}

interface ProducerOptionCase {
  name: string;
  /** The options, given the test's Redis URL (a producer that connected would show in CLIENT LIST). */
  options: (redisUrl: string) => unknown;
  /** Every option named, in order. */
  paths: string[];
  says: string;
}

const PRODUCER_OPTION_CASES: ProducerOptionCase[] = [
  // The README quickstart, copied with REDIS_URL unset: a bare TypeError ("reading 'on'") before.
  { name: 'redis undefined (process.env.REDIS_URL! unset)', options: () => ({ redis: process.env.HEADROOM_NO_SUCH_VARIABLE }), paths: ['redis'], says: 'redis: no Redis URL (got undefined): set REDIS_URL' },
  { name: 'redis empty (REDIS_URL set to nothing)', options: () => ({ redis: '' }), paths: ['redis'], says: 'redis: no Redis URL (got an empty string): set REDIS_URL' },
  { name: 'redis a number', options: () => ({ redis: 6379 }), paths: ['redis'], says: 'or an ioredis connection, got number' },
  { name: 'no options at all', options: () => undefined, paths: ['(options)'], says: 'expected an object with at least `redis`, got nothing' },
  // Accepted before: every job then passed the size check.
  { name: "maxJobBytes 'abc'", options: (url) => ({ redis: url, maxJobBytes: 'abc' }), paths: ['maxJobBytes'], says: 'maxJobBytes: expected a positive integer, got "abc"' },
  // Accepted before: every job refused "over the limit of -1 bytes".
  { name: 'maxJobBytes -1', options: (url) => ({ redis: url, maxJobBytes: -1 }), paths: ['maxJobBytes'], says: 'expected a positive integer, got -1' },
  // Accepted before: every call failed "not ready after -5 ms".
  { name: 'connectTimeoutMs -5', options: (url) => ({ redis: url, connectTimeoutMs: -5 }), paths: ['connectTimeoutMs'], says: 'connectTimeoutMs: expected a positive integer, got -5' },
  { name: 'connectTimeoutMs past a Node timer', options: (url) => ({ redis: url, connectTimeoutMs: 2 ** 31 }), paths: ['connectTimeoutMs'], says: 'at most 2147483647' },
  { name: 'resultCacheTtlMs NaN', options: (url) => ({ redis: url, resultCacheTtlMs: Number.NaN }), paths: ['resultCacheTtlMs'], says: 'resultCacheTtlMs: expected a non-negative integer' },
  { name: 'retention count negative', options: (url) => ({ redis: url, retention: { completedCount: -1 } }), paths: ['retention.completedCount'], says: 'retention.completedCount: expected a non-negative integer, got -1' },
  { name: 'retention not an object', options: (url) => ({ redis: url, retention: 7 }), paths: ['retention'], says: 'retention: expected an object' },
  { name: 'a prefix that would break the hash tag', options: (url) => ({ redis: url, prefix: 'a}b' }), paths: ['prefix'], says: "prefix: expected the fleet's prefix" },
  { name: 'a misspelt option', options: (url) => ({ redis: url, connectTimeout: 500 }), paths: ['(options)'], says: 'unknown key "connectTimeout"' },
  { name: 'every bad option at once', options: () => ({ redis: undefined, maxJobBytes: 'abc', connectTimeoutMs: -5 }), paths: ['redis', 'maxJobBytes', 'connectTimeoutMs'], says: 'no Redis URL' },
];

/** Whether something accepts a TCP connection on the loopback port. */
function connectable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function writeBadConfig(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'headroom-bad-')), 'headroom.config.yaml');
  writeFileSync(file, `models:\n  ${SONNET}: { provider: anthropic, limits: { rpm: -5 } }\n`);
  return file;
}

describe('bad environment and CLI flags: exit 2 with the message, nothing written', () => {
  let busy: Server;
  let busyPort: number;
  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '0.0.0.0', resolve));
    busyPort = (busy.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => busy.close(() => resolve())));

  it.concurrent.each(CLI_CASES)('$name', async (c) => {
    const config = writeConfig({ redis: { prefix: 'clikey' }, providers: { anthropic: { apiKeyEnv: CLI_KEY_ENV } }, models: { [SONNET]: { provider: 'anthropic' } } });
    const busyConfig = writeConfig({ redis: { prefix: 'clibusy' }, providers: { anthropic: { apiKeyEnv: CLI_KEY_ENV } }, models: { [SONNET]: { provider: 'anthropic' } }, dispatch: { metricsPort: busyPort, metricsHost: '127.0.0.1' }, gateway: { keys: { app: { keyEnv: 'BAD_INPUT_GATEWAY_KEY' } } } });
    const busyMetricsConfig = writeConfig({ redis: { prefix: 'clibusy' }, models: { [SONNET]: { provider: 'anthropic' } }, gateway: { keys: { app: { keyEnv: 'BAD_INPUT_GATEWAY_KEY' } }, metricsPort: busyPort, metricsHost: '127.0.0.1' } });
    const ctx: CliContext = { config, redisUrl: redis.url, busyPort, busyConfig, busyMetricsConfig };
    const proc = spawnHeadroom(c.args(ctx), c.env ?? {});
    // Bounds a process that never exits; the cases start at once, so on a loaded 2-core machine
    // each one's start (tsx compiling the CLI) alone took 30 s: the bound stays under the test's.
    const timer = setTimeout(() => proc.child.kill('SIGKILL'), 100_000);
    const code = await proc.exited;
    clearTimeout(timer);
    const out = proc.output();
    expect(code, out).toBe(c.exit);
    expect(out).toContain(typeof c.says === 'function' ? c.says(ctx) : c.says);
    expect(out, 'a clear message, not a stack trace').not.toMatch(/\n\s+at /);
    if (c.secret) expect(out).not.toContain(c.secret);
    if (c.untouched) expect(await keysUnder(admin, c.untouched)).toEqual([]);
  });

  it("refuses a gateway whose metrics port is in use before it listens: its own port never takes a connection", async () => {
    const port = await freePort();
    const config = parseConfig({ redis: { prefix: 'gwbusy' }, models: { [SONNET]: { provider: 'anthropic' } }, gateway: { keys: { app: { keyEnv: 'BAD_INPUT_GATEWAY_KEY' } }, metricsPort: busyPort, metricsHost: '127.0.0.1' } });
    const started = startGateway({ config, redisUrl: redis.url, port, host: '127.0.0.1', env: { BAD_INPUT_GATEWAY_KEY: 'hr-gw-bad-input-key-0123456789' }, logger: createLogger({ level: 'silent' }) });
    const err = await started.then(async (gateway) => { await gateway.close(); return undefined; }, (e: unknown) => e);
    expect(err).toMatchObject({ code: 'ADDRESS_UNAVAILABLE', address: `127.0.0.1:${busyPort}`, setting: 'gateway.metricsPort' });
    // Listening first, it stayed open (taking calls and their jobs) until the process exited.
    expect(await connectable(port)).toBe(false);
  });

  it('refuses a malformed Redis URL in the Producer constructor with CONFIG_INVALID, not echoing it', () => {
    for (const url of ['localhost:6379', 'redis://:hunter2-pw@127.0.0.1:99999', 'http://127.0.0.1:6379']) {
      const err = constructed({ redis: url });
      expect(err).toBeInstanceOf(HeadroomError);
      expect((err as HeadroomError).code).toBe('CONFIG_INVALID');
      expect((err as ConfigError).issues).toEqual([{ path: 'redis', message: expect.stringMatching(/^invalid Redis URL: /) }]);
      expect((err as Error).message).not.toContain('hunter2-pw');
    }
  });

  it.each(PRODUCER_OPTION_CASES)('refuses Producer option $name with CONFIG_INVALID naming it, before connecting', async (c) => {
    const clients = async () => String(await admin.client('LIST')).trim().split('\n').length;
    const before = await clients();
    const err = constructed(c.options(redis.url));
    // What a producer's caller imports: the SDK's own export.
    expect(err, 'refused').toBeInstanceOf(ProducerConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    expect((err as ConfigError).issues.map((i) => i.path)).toEqual(c.paths);
    expect((err as Error).message).toContain(c.says);
    expect((err as Error).message, 'the options, named as such').toMatch(/^invalid config \(Producer options\):/);
    expect(await clients()).toBe(before);
  });

  it('answers REDIS_UNAVAILABLE within the connect timeout when nothing listens at the URL', async () => {
    const producer = new Producer({ redis: 'redis://127.0.0.1:1', prefix: PREFIX });
    const started = Date.now();
    const err = await producer.enqueue(valid).then(() => undefined, (e: unknown) => e);
    expect((err as HeadroomError).code).toBe('REDIS_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(3_000);
    await producer.close();
  });
});

// ---- garbage on the wire ---------------------------------------------------------------------

interface WireCase {
  mode: WireMode;
  code: FailureCode;
  /** The failure's message (after the code). */
  message: RegExp;
}

const WIRE_CASES: WireCase[] = [
  { mode: 'malformed-json', code: 'RETRIES_EXHAUSTED', message: /^after 2 attempts, last: 200 response body is not valid JSON \(\d+ bytes\)/ },
  { mode: 'html-200', code: 'RETRIES_EXHAUSTED', message: /^after 2 attempts, last: 200 response body is not valid JSON/ },
  { mode: 'empty-200', code: 'RETRIES_EXHAUSTED', message: /^after 2 attempts, last: 200 response body is not valid JSON \(0 bytes\)/ },
  { mode: 'missing-usage', code: 'RETRIES_EXHAUSTED', message: /^after 2 attempts, last: 200 response body has an unexpected shape: usage: / },
  { mode: 'wrong-types', code: 'RETRIES_EXHAUSTED', message: /^after 2 attempts, last: 200 response body has an unexpected shape: usage\.input_tokens: / },
  // An HTML error page carries no provider message: the reason says so, with the status.
  { mode: 'html-502', code: 'RETRIES_EXHAUSTED', message: /^after 2 attempts, last: 502 HTTP 502 \(no error message\)$/ },
  { mode: 'html-400', code: 'PROVIDER_REJECTED', message: /^400 HTTP 400 \(no error message\)$/ },
];

describe('garbage on the wire: the job fails with a clear reason, the worker keeps serving', () => {
  let sim: Simulator;
  let provider: MisbehavingProvider;
  let worker: FleetProcess;
  let producer: Producer;
  const prefix = 'wire';

  beforeAll(async () => {
    sim = await startSimulator({ latencyMs: 5 });
    provider = await startMisbehavingProvider(sim.url);
    const config = writeConfig({
      redis: { prefix },
      providers: { anthropic: { baseURL: provider.url, apiKeyEnv: CLI_KEY_ENV } },
      models: { [HAIKU]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 400_000, otpm: 100_000 } } },
      // The cases run one after another against one model, which to the fleet is a model answering
      // nothing but garbage: an outage, whose failures cost a job no attempt for outageGraceMs.
      // Each case is about its own failure's reason, so the grace is cut to nothing.
      retry: { maxAttempts: 2, baseDelayMs: 20, maxDelayMs: 50, outageGraceMs: 1 },
      // A batch job's answer within a test's wait (the unreadable jobs' test sends one).
      batch: { maxWaitMs: 200, pollIntervalMs: 300 },
    } satisfies HeadroomConfigInput);
    worker = spawnWorker(config, redis.url, 'wire-w1', { [CLI_KEY_ENV]: 'sk-bad-input-wire' });
    await waitForFleet(redis.url, prefix, [worker]);
    producer = new Producer({ redis: redis.url, prefix });
  });
  afterAll(async () => {
    await producer?.close();
    await stopAll(worker ? [worker] : [], 'SIGKILL');
    await provider?.close();
    await sim?.close();
  });

  const wireJob = (text: string): LlmJobInput => ({ priority: 'HIGH', provider: 'anthropic', request: { model: HAIKU, max_tokens: 16, messages: [{ role: 'user', content: text }] } });

  it.each(WIRE_CASES)('$mode', async ({ mode, code, message }) => {
    const err = await producer.run(wireJob(`wire:${mode}`), { timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect((err as JobFailedError).failureCode).toBe(code);
    const failure = (await producer.getJob((err as JobFailedError).jobId))?.failure;
    expect(failure).toMatchObject({ code, message });
    // Two attempts, and the calls the model's outage cost (the cases before left it answering
    // nothing but garbage), which its reason names.
    const free = Number(/\(and (\d+) failed in the model's outage, not counted\)$/.exec(failure?.message ?? '')?.[1] ?? 0);
    expect(provider.hits.get(mode)).toBe(mode === 'html-400' ? 1 : 2 + free);
  });

  const providerCalls = () => [...provider.hits.values()].reduce((a, b) => a + b, 0);
  /** The HIGH lane's BullMQ Queue, as another tool holds it: its `add` skips admission. */
  const highLaneAsAnotherTool = () => {
    const lane = laneKeys(prefix, 'high');
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(lane.queueName, { connection, prefix: lane.bullPrefix });
    return { queue, close: async () => { await queue.close(); connection.disconnect(); } };
  };

  it("fails a job another tool wrote straight into a lane with JOB_INVALID, naming what is wrong, and takes it once", async () => {
    // What BullMQ's own Queue.add writes: no admission checked it. Unchecked, it threw in the
    // worker, went back to its lane when its lock expired, and was taken again, for ever.
    const { queue, close } = highLaneAsAnotherTool();
    const callsBefore = providerCalls();
    try {
      await queue.add('foreign', { priority: 'HIGH', provider: 'anthropic', request: { model: HAIKU, messages: 'not a list' } }, { jobId: 'high.foreign-1' });
      const err = await producer.handleOf('high.foreign-1').result({ timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(JobFailedError);
      expect((err as JobFailedError).failureCode).toBe('JOB_INVALID');
      expect((err as JobFailedError).reason).toMatch(/^JOB_INVALID: invalid job: request\.max_tokens: .*request\.messages: expected an array.* \(checked by a worker of this version\)$/);
      expect(await queue.getJob('high.foreign-1').then((j) => j?.attemptsStarted)).toBe(1);
      // Nothing a Headroom job has: this one threw in the fetch itself.
      await queue.add('foreign', { hello: 'world' }, { jobId: 'high.foreign-2' });
      const other = await producer.handleOf('high.foreign-2').result({ timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e);
      expect((other as JobFailedError).failureCode).toBe('JOB_INVALID');
      expect((other as JobFailedError).reason).toMatch(/provider: expected "anthropic" or "openai", got nothing/);
      // The provider never heard of it.
      expect(providerCalls()).toBe(callsBefore);
    } finally {
      await close();
    }
  });

  it("fails a well-formed job added around admission (BullMQ's Queue.add) with JOB_INVALID, never sending it: it skipped the lane's cap", async () => {
    const { queue, close } = highLaneAsAnotherTool();
    const callsBefore = providerCalls();
    try {
      // Exactly what a producer sends, but written by BullMQ's own add: no cap, quota or shed saw it.
      await queue.add(`anthropic:${HAIKU}`, wireJob('added around admission'), { jobId: 'high.around-1' });
      const err = await producer.handleOf('high.around-1').result({ timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(JobFailedError);
      expect((err as JobFailedError).failureCode).toBe('JOB_INVALID');
      expect((err as JobFailedError).reason).toMatch(/^JOB_INVALID: not admitted: the job reached its lane without Headroom's admission \(BullMQ's Queue\.add, say\)/);
      expect(providerCalls()).toBe(callsBefore);
      // The same job through admission runs.
      expect((await producer.run(wireJob('added around admission'), { timeoutMs: 20_000 })).model).toBe(HAIKU);
    } finally {
      await close();
    }
  });

  /** A job hash written field by field, as a script or a hand in redis-cli would, put at the head of the lane's wait list. */
  const writeByHand = async (laneName: 'high' | 'batch', id: string, fields: Record<string, string>) => {
    const lane = laneKeys(prefix, laneName);
    await admin.hset(`${lane.jobKeyPrefix}${id}`, { name: 'by-hand', timestamp: String(Date.now()), ...fields });
    await admin.lpush(lane.wait, id);
    await admin.zadd(lane.marker, 0, '0');
  };

  it('fails a job written by hand whose stored data or options are not JSON with JOB_INVALID, naming the field, taken once', async () => {
    // BullMQ parses both after it moved the job to active: its fetch threw, the worker never knew
    // the job, which stalled back and was taken again until BullMQ failed it as stalled. In the
    // BATCH lane the jobs taken beside it stalled with it.
    const callsBefore = providerCalls();
    const good = wireJob('a question among the unreadable');
    await writeByHand('high', 'high.by-hand-data', { data: '{not json', opts: '{}' });
    await writeByHand('high', 'high.by-hand-opts', { data: JSON.stringify(good), opts: '{{{' });
    await writeByHand('batch', 'batch.by-hand-data', { data: '{"provider":', opts: '{}' });
    const batched = await producer.enqueue({ ...good, sla: 'none' });
    for (const [id, field] of [['high.by-hand-data', 'data'], ['high.by-hand-opts', 'opts'], ['batch.by-hand-data', 'data']] as const) {
      const err = await producer.handleOf(id).result({ timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e);
      expect(err, id).toBeInstanceOf(JobFailedError);
      expect((err as JobFailedError).failureCode).toBe('JOB_INVALID');
      expect((err as JobFailedError).reason).toMatch(new RegExp(`^JOB_INVALID: not a job: its stored ${field} is not JSON \\(.+\\) \\(read by a worker of this version\\)$`));
      const lane = laneKeys(prefix, id.split('.')[0]!);
      // Taken once, and readable now (Bull Board lists it), what was stored kept beside it.
      const [started, kept] = await admin.hmget(`${lane.jobKeyPrefix}${id}`, 'ats', field === 'data' ? 'hrUnreadableData' : 'hrUnreadableOpts');
      expect(started, id).toBe('1');
      expect(kept, id).toMatch(/^\{/);
    }
    // The batch job beside the unreadable one goes on to its batch and its answer.
    expect((await batched.result({ timeoutMs: 30_000 })).model).toBe(HAIKU);
    expect(providerCalls()).toBe(callsBefore);
  });

  it('fails a job written by hand whose stored data or options are JSON of the wrong kind with JOB_INVALID, naming the field, taken once', async () => {
    // `opts null` made BullMQ's fetch throw a TypeError (not the SyntaxError above) after the move
    // to active: the job stalled back and was taken again for ever, in the BATCH lane with the jobs
    // taken beside it. The other kinds BullMQ reads (options as none at all), Headroom cannot run.
    const callsBefore = providerCalls();
    const good = JSON.stringify(wireJob('a question with stored fields of the wrong kind'));
    const cases = [
      { lane: 'high', field: 'opts', stored: 'null', kind: 'null' },
      { lane: 'high', field: 'opts', stored: '5', kind: 'a number' },
      { lane: 'high', field: 'opts', stored: '[]', kind: 'an array' },
      { lane: 'high', field: 'opts', stored: '"fast"', kind: 'a string' },
      { lane: 'high', field: 'data', stored: 'null', kind: 'null' },
      { lane: 'high', field: 'data', stored: '[1]', kind: 'an array' },
      { lane: 'batch', field: 'opts', stored: 'null', kind: 'null' },
      // Two the BATCH leader's parallel takes throw on at once: each is rescued, neither twice.
      { lane: 'batch', field: 'opts', stored: 'null', kind: 'null' },
      { lane: 'batch', field: 'opts', stored: '7', kind: 'a number' },
      { lane: 'batch', field: 'data', stored: '5', kind: 'a number' },
    ] as const;
    const idOf = (i: number) => `${cases[i]!.lane}.wrong-kind-${i}`;
    for (const [i, c] of cases.entries()) await writeByHand(c.lane, idOf(i), { data: good, opts: '{}', [c.field]: c.stored });
    const batched = await producer.enqueue({ ...wireJob('a batch question beside the wrong kinds'), sla: 'none' });
    for (const [i, c] of cases.entries()) {
      const id = idOf(i);
      const err = await producer.handleOf(id).result({ timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e);
      expect(err, id).toBeInstanceOf(JobFailedError);
      expect((err as JobFailedError).failureCode, id).toBe('JOB_INVALID');
      expect((err as JobFailedError).reason, id).toBe(`JOB_INVALID: not a job: its stored ${c.field} is ${c.kind}, not an object (read by a worker of this version)`);
      // Taken once, and readable now, what was stored kept beside it.
      const lane = laneKeys(prefix, c.lane);
      const [started, kept] = await admin.hmget(`${lane.jobKeyPrefix}${id}`, 'ats', c.field === 'data' ? 'hrUnreadableData' : 'hrUnreadableOpts');
      expect(started, id).toBe('1');
      expect(kept, id).toBe(c.stored);
    }
    // The batch job beside them goes on to its batch and its answer.
    expect((await batched.result({ timeoutMs: 30_000 })).model).toBe(HAIKU);
    expect(providerCalls()).toBe(callsBefore);
  });

  it('kept the worker process up and serving through all of it', async () => {
    const result = await producer.run(wireJob('a normal question after the garbage'), { timeoutMs: 20_000 });
    expect(result.model).toBe(HAIKU);
    expect(worker.child.exitCode).toBeNull();
    expect(worker.output()).not.toMatch(/Unhandled|uncaught|TypeError/i);
  });
});
