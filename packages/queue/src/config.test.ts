import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig, poolOf, redisUrlOf } from './config.js';
import { ConfigError } from './errors.js';

const EXAMPLE = fileURLToPath(new URL('../../../headroom.config.yaml', import.meta.url));
/** The least a config must hold. */
const ONE_MODEL = { m: { provider: 'anthropic' } };

function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

function writeYaml(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'hr-config-')), 'headroom.config.yaml');
  writeFileSync(file, text);
  return file;
}

describe('config', () => {
  it('loads the annotated example at the repo root', () => {
    const cfg = loadConfig(EXAMPLE);
    expect(cfg.models['claude-sonnet-4-6']?.limits.itpm).toBe(450_000);
    expect(poolOf(cfg, 'claude-sonnet-4-6')).toBe('sonnet-4');
    expect(poolOf(cfg, 'gpt-4.1')).toBe('gpt-4.1');
    expect(cfg.lanes.critical.cap).toBe(50);
  });

  it('fills every default from a minimal file', () => {
    const cfg = parseConfig({ models: { m: { provider: 'anthropic' } } });
    expect(cfg.lanes.low).toEqual({ cap: 5000, maxBytes: 256 * 1024 * 1024, weight: 0.1, reserve: 0.4, fairReserve: 0.02, maxWaitMs: 3_600_000, retryReserve: 0.9, retryBudgetExempt: false, fairness: 'tenants' });
    expect(() => parseConfig({ models: { m: { provider: 'anthropic' } }, lanes: { low: { fairReserve: 0.6 } } })).toThrow(/lanes\.low\.fairReserve.*reserve \+ fairReserve must stay below 1/);
    expect(cfg.lanes.batch.fairness).toBe('fifo');
    // A lane given only some of its settings still gets the rest, fairness included.
    expect(parseConfig({ models: { m: { provider: 'anthropic' } }, lanes: { high: { cap: 3 } } }).lanes.high.fairness).toBe('tenants');
    expect(cfg.models.m?.limits).toEqual({ burst: 60 });
    expect(cfg.dashboard.readOnly).toBe(true);
    expect(cfg.throttle).toEqual({ k: 2, windowMs: 2_000, probeIntervalMs: 1_000 });
    expect(cfg.retry.budget).toEqual({ ratio: 0.2, windowMs: 10_000, minPerSecond: 1 });
    expect(cfg.providers.anthropic.apiKeyEnv).toBe('ANTHROPIC_API_KEY');
    expect(cfg.limits.maxJobBytes).toBe(1024 * 1024);
  });

  it('still loads a file with the retired breaker section, and refuses a throttle k below 1 by path', () => {
    expect(parseConfig({ models: { m: { provider: 'anthropic' } }, breaker: { failureThreshold: 5, openMs: 30_000 } }).throttle.k).toBe(2);
    expect(() => parseConfig({ models: { m: { provider: 'anthropic' } }, throttle: { k: 0.5 } })).toThrow(/throttle\.k: expected a number of at least 1/);
    expect(() => parseConfig({ models: { m: { provider: 'anthropic' } }, retry: { budget: { ratio: 2 } } })).toThrow(/retry\.budget\.ratio: expected a number from 0 to 1/);
    expect(() => parseConfig({ models: { m: { provider: 'anthropic' } }, throttle: { probeIntervalMs: 5_000 } })).toThrow(/throttle\.windowMs: must be at least 2 x throttle\.probeIntervalMs \(10000\)/);
  });

  it('states the real rule of a bounded setting, not only that it is a positive integer', () => {
    const lines = configErrorOf(() =>
      parseConfig({
        models: ONE_MODEL,
        batch: { maxRequests: 200_000, parkLockMs: 5_000, leaseMs: 10, submitTimeoutMs: 1.5 },
        dashboard: { port: 70_000, alerts: { rate429WindowMinutes: 121 } },
        gateway: { maxHeaderBytes: 100 },
        tenants: { default: { weight: 0 } },
        lanes: { low: { weight: -1 } },
      }),
    ).issues.map((i) => `${i.path}: ${i.message}`);
    expect(lines).toEqual(
      expect.arrayContaining([
        'batch.maxRequests: expected an integer from 1 to 100000, got 200000',
        'batch.parkLockMs: expected an integer of at least 10000, got 5000',
        'batch.leaseMs: expected an integer of at least 1000, got 10',
        'batch.submitTimeoutMs: expected an integer of at least 1000, got 1.5',
        'dashboard.port: expected an integer from 1 to 65535, got 70000',
        'dashboard.alerts.rate429WindowMinutes: expected an integer from 1 to 120, got 121',
        'gateway.maxHeaderBytes: expected an integer of at least 1024, got 100',
        'tenants.default.weight: expected a number from 0.01 to 100, got 0',
        'lanes.low.weight: expected a number of at least 0, got -1',
      ]),
    );
  });

  it('lists every problem by path with what it found', () => {
    const file = writeYaml(`
models:
  claude-sonnet-4-6:
    provider: anthropic
    limits: { rpm: 50, itpm: -5 }
    fallback: [claude-nope]
  gpt-4.1:
    provider: openai
    limits: { itpm: 10 }
    maxOutputTokens: 0.5
lanes:
  low: { reserve: 1.5, capp: 3 }
dashboard: { port: "eighty" }
`);
    const err = configErrorOf(() => loadConfig(file));
    const lines = err.issues.map((i) => `${i.path}: ${i.message}`);
    expect(lines).toContain('models.claude-sonnet-4-6.limits.itpm: expected a positive integer, got -5');
    expect(lines).toContain('models.claude-sonnet-4-6.fallback.0: unknown model "claude-nope" (not under models)');
    expect(lines).toContain('lanes.low.reserve: expected a number from 0 to 1, got 1.5');
    expect(lines).toContain('models.gpt-4.1.maxOutputTokens: expected a positive integer, got 0.5');
    expect(lines).toContain('lanes.low: unknown key "capp"');
    expect(lines.some((l) => l.startsWith('dashboard.port:'))).toBe(true);
    expect(err.message).toContain(file);
    expect(err.code).toBe('CONFIG_INVALID');
  });

  it("refuses an OpenAI fallback without maxOutputTokens where its primary has one: a request with no output bound could never fall back to it", () => {
    const gpt = { provider: 'openai', maxOutputTokens: 32_768 };
    expect(parseConfig({ models: { 'gpt-4.1': { ...gpt, fallback: ['gpt-4.1-mini'] }, 'gpt-4.1-mini': gpt } }).models['gpt-4.1']?.fallback).toEqual(['gpt-4.1-mini']);
    // Without a cap on the primary, such requests are refused at enqueue anyway: nothing to say.
    expect(parseConfig({ models: { 'gpt-4.1': { provider: 'openai', fallback: ['gpt-4.1-mini'] }, 'gpt-4.1-mini': { provider: 'openai' } } }).models['gpt-4.1-mini']).toBeDefined();
    const err = configErrorOf(() => parseConfig({ models: { 'gpt-4.1': { ...gpt, fallback: ['gpt-4.1-mini'] }, 'gpt-4.1-mini': { provider: 'openai' } } }));
    expect(err.issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'models.gpt-4.1.fallback.0: "gpt-4.1-mini" has no maxOutputTokens, so a request that sets no max_completion_tokens (the SDKs\' default), which "gpt-4.1" serves, could never fall back to it: set models.gpt-4.1-mini.maxOutputTokens',
    ]);
  });

  it('refuses models of one pool with different limits or providers, naming both', () => {
    const sonnet = { provider: 'anthropic', pool: 'sonnet-4', limits: { rpm: 50, itpm: 30_000, otpm: 8_000 } };
    expect(parseConfig({ models: { a: sonnet, b: { ...sonnet, limits: { ...sonnet.limits, burst: 60 } } } }).models.b?.pool).toBe('sonnet-4');
    const err = configErrorOf(() =>
      parseConfig({
        models: {
          'claude-sonnet-4-6': sonnet,
          'claude-sonnet-4-5': { ...sonnet, limits: { rpm: 50, itpm: 40_000, otpm: 8_000 } },
          'claude-sonnet-4': { provider: 'anthropic', pool: 'sonnet-4' },
          'gpt-4.1': { provider: 'openai', pool: 'sonnet-4', limits: { rpm: 50 } },
        },
      }),
    );
    expect(err.issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'models.claude-sonnet-4-5.limits: differ from those of "claude-sonnet-4-6", which shares pool "sonnet-4": every model of a pool must have the same limits',
      'models.claude-sonnet-4.limits: differ from those of "claude-sonnet-4-6", which shares pool "sonnet-4": every model of a pool must have the same limits',
      'models.gpt-4.1.pool: pool "sonnet-4" holds anthropic model "claude-sonnet-4-6": a pool is one provider\'s limit',
    ]);
  });

  it("reads the gateway's client keys with their defaults, and refuses a default priority above the key's highest", () => {
    const example = loadConfig(EXAMPLE);
    expect(example.gateway.keys['nightly-jobs']).toEqual({ keyEnv: 'HEADROOM_GATEWAY_KEY_NIGHTLY', tenant: 'reports', defaultPriority: 'low', maxPriority: 'normal' });
    const minimal = parseConfig({ models: ONE_MODEL, gateway: { keys: { app: { keyEnv: 'APP_KEY' } } } });
    expect(minimal.gateway.keys.app).toEqual({ keyEnv: 'APP_KEY', defaultPriority: 'normal', maxPriority: 'critical' });
    expect(minimal.gateway.maxWaitMs).toBe(60_000);
    const err = configErrorOf(() => parseConfig({ models: ONE_MODEL, gateway: { keys: { app: { keyEnv: 'app-key', defaultPriority: 'high', maxPriority: 'normal' }, 'bad name!': { keyEnv: 'X' } } } }));
    const lines = err.issues.map((i) => `${i.path}: ${i.message}`);
    // The value sits where a pasted key would: it is not echoed (see the secrets tests).
    expect(lines).toContain('gateway.keys.app.keyEnv: expected an environment variable name like MY_API_KEY, got "[redacted]"');
    expect(lines).toContain('gateway.keys.app.defaultPriority: "high" is above the key\'s maxPriority "normal"');
    expect(lines.some((l) => l.startsWith('gateway.keys.bad name!'))).toBe(true);
  });

  it('refuses a password in the file and names the env variable to use', () => {
    const err = configErrorOf(() => parseConfig({ redis: { url: 'redis://:hunter2@localhost:6379' }, models: ONE_MODEL }));
    expect(err.issues[0]?.path).toBe('redis.url');
    expect(err.issues[0]?.message).toMatch(/REDIS_URL/);
  });

  it('refuses a provider baseURL that is not http(s), naming the field', () => {
    for (const baseURL of ['localhost:8000', 'ftp://proxy.internal/v1', 'api.anthropic.com']) {
      const err = configErrorOf(() => parseConfig({ providers: { anthropic: { baseURL } }, models: ONE_MODEL }));
      expect(err.issues.map((i) => i.path)).toEqual(['providers.anthropic.baseURL']);
      expect(err.issues[0]?.message).toMatch(/^expected an http:\/\/ or https:\/\/ URL/);
    }
    const ok = parseConfig({ providers: { anthropic: { baseURL: 'http://localhost:8000' }, openai: { baseURL: 'https://proxy.internal/v1' } }, models: ONE_MODEL });
    expect([ok.providers.anthropic.baseURL, ok.providers.openai.baseURL]).toEqual(['http://localhost:8000', 'https://proxy.internal/v1']);
  });

  it("gives each provider a stream idle timeout and a stream life of its own, and refuses bounds that contradict each other, naming the key", () => {
    const cfg = parseConfig({ models: ONE_MODEL });
    expect(cfg.providers.anthropic).toMatchObject({ timeoutMs: 600_000, streamIdleMs: 120_000, streamTimeoutMs: 3_600_000 });
    expect(parseConfig({ providers: { openai: { streamIdleMs: 30_000 } }, models: ONE_MODEL }).providers.openai).toMatchObject({ timeoutMs: 600_000, streamIdleMs: 30_000, streamTimeoutMs: 3_600_000 });
    // A config from before streamTimeoutMs, with a call timeout over an hour, still reads: a stream's life is at least it.
    expect(parseConfig({ providers: { openai: { timeoutMs: 7_200_000 } }, models: ONE_MODEL }).providers.openai).toMatchObject({ timeoutMs: 7_200_000, streamTimeoutMs: 7_200_000 });
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ streamIdleMs: 0 }, 'providers.anthropic.streamIdleMs', /positive integer/],
      [{ streamIdleMs: 1.5 }, 'providers.anthropic.streamIdleMs', /positive integer/],
      [{ streamIdleMs: '60s' }, 'providers.anthropic.streamIdleMs', /positive integer/],
      [{ streamTimeoutMs: 0 }, 'providers.anthropic.streamTimeoutMs', /positive integer/],
      // A stream's first output may take as long as a plain call's answer.
      [{ timeoutMs: 900_000, streamTimeoutMs: 600_000 }, 'providers.anthropic.streamTimeoutMs', /at least timeoutMs/],
      [{ streamIdleMs: 3_600_000 }, 'providers.anthropic.streamIdleMs', /below streamTimeoutMs/],
      [{ streamIdleMs: 60_000, streamTimeoutMs: 600_000, timeoutMs: 600_000, streamIdle: 1 }, 'providers.anthropic', /streamIdle/],
    ];
    for (const [anthropic, path, message] of cases) {
      const err = configErrorOf(() => parseConfig({ providers: { anthropic }, models: ONE_MODEL }));
      expect(err.issues, JSON.stringify(anthropic)).toEqual([expect.objectContaining({ path, message: expect.stringMatching(message) })]);
    }
  });

  it("refuses a password in the URL's query, which ioredis reads as surely as one before the host", () => {
    for (const url of ['redis://localhost:6379?password=hunter2', 'rediss://localhost:6379/2?db=2&password=hunter2', 'redis://localhost:6379?sentinelPassword=hunter2']) {
      const err = configErrorOf(() => parseConfig({ redis: { url }, models: ONE_MODEL }));
      expect(err.issues.map((i) => `${i.path}: ${i.message}`)).toEqual([expect.stringMatching(/^redis\.url: contains a password: .*REDIS_URL/)]);
      expect(err.message).not.toContain('hunter2');
    }
    // A user name is not a secret, and an empty password authenticates nothing.
    expect(parseConfig({ redis: { url: 'redis://localhost:6379?username=app' }, models: ONE_MODEL }).redis.url).toBe('redis://localhost:6379?username=app');
    expect(parseConfig({ redis: { url: 'redis://localhost:6379?password=' }, models: ONE_MODEL }).redis.url).toBe('redis://localhost:6379?password=');
  });

  it('never echoes a key pasted into the file, or a URL password, in the error', () => {
    const key = 'sk-ant-api03-PASTEDpastedPASTED0123456789';
    const err = configErrorOf(() => parseConfig({ redis: { url: 'redis-cluster://:hunter2@h:1' }, providers: { anthropic: { apiKeyEnv: key } }, models: ONE_MODEL }));
    expect(err.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['redis.url', 'providers.anthropic.apiKeyEnv']));
    expect(err.message).not.toContain('hunter2');
    expect(err.message).not.toContain('PASTED');
    expect(err.message).toContain('got "[redacted]"');
  });

  it('never echoes a pasted key that is not shaped like sk-/pk-/rk-, wherever it lands', () => {
    // Google- and hex-style keys, and a key pasted into a field that takes a word.
    const google = 'AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv0';
    const hex = '9f8e7d6c5b4a39281706f5e4d3c2b1a0';
    const err = configErrorOf(() =>
      parseConfig({ providers: { anthropic: { apiKeyEnv: google }, openai: { apiKeyEnv: 'lower-case-but-short' } }, redis: { urlEnv: hex }, dispatch: { order: hex }, models: ONE_MODEL }),
    );
    expect(err.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['providers.anthropic.apiKeyEnv', 'providers.openai.apiKeyEnv', 'redis.urlEnv', 'dispatch.order']));
    for (const secret of [google, hex, 'lower-case-but-short']) expect(err.message).not.toContain(secret);
    // Words are still echoed where they help.
    const plain = configErrorOf(() => parseConfig({ dispatch: { order: 'random' }, models: ONE_MODEL }));
    expect(plain.message).toContain('got "random"');
  });

  it('refuses broken YAML with its line', () => {
    const err = configErrorOf(() => loadConfig(writeYaml('models:\n  a: [1, 2\n')));
    expect(err.issues[0]?.path).toMatch(/yaml line/);
  });

  it('refuses YAML whose aliases expand past what yaml allows (a billion laughs) as a config error, not a crash', () => {
    // Each line is nine of the one before: ten lines are 9^10 copies once expanded.
    const lines = ['a0: &a0 [x]', ...Array.from({ length: 10 }, (_, i) => `a${i + 1}: &a${i + 1} [${Array(9).fill(`*a${i}`).join(', ')}]`)];
    const err = configErrorOf(() => loadConfig(writeYaml(`${lines.join('\n')}\n`)));
    expect(err.issues).toEqual([{ path: '(yaml)', message: expect.stringMatching(/^cannot be read: Excessive alias count/) }]);
  });

  it('names a missing file', () => {
    const err = configErrorOf(() => loadConfig('/nonexistent/headroom.config.yaml'));
    expect(err.message).toMatch(/cannot read/);
  });

  it('refuses a config that serves no model: admission would refuse every job', () => {
    const err = configErrorOf(() => parseConfig({ models: {} }));
    expect(err.issues).toEqual([{ path: 'models', message: 'lists no model: a fleet that serves no model refuses every job; list at least one' }]);
  });

  it('refuses values that are certainly mistakes, naming each by path', () => {
    const lines = (input: Record<string, unknown>) => configErrorOf(() => parseConfig(input)).issues.map((i) => `${i.path}: ${i.message}`);
    // A ladder that names its own model, or one model twice.
    expect(lines({ models: { a: { provider: 'anthropic', fallback: ['b', 'a', 'b'] }, b: { provider: 'anthropic' } } })).toEqual([
      'models.a.fallback.1: "a" is the model itself, which the ladder already starts with',
      'models.a.fallback.2: "b" is already listed (fallback.0)',
    ]);
    // A backoff ceiling below its base (the default base is 500).
    expect(lines({ models: ONE_MODEL, retry: { maxDelayMs: 200 } })).toEqual(['retry.maxDelayMs: is below retry.baseDelayMs (500): every such backoff would be cut below its own base; raise maxDelayMs or lower baseDelayMs']);
    expect(lines({ models: ONE_MODEL, retry: { unhealthyBaseDelayMs: 50_000 } })).toEqual(['retry.maxDelayMs: is below retry.unhealthyBaseDelayMs (50000): every such backoff would be cut below its own base; raise maxDelayMs or lower unhealthyBaseDelayMs']);
    // Its default under a small maxDelayMs (as tests set) is only capped, not a mistake of the file's.
    expect(parseConfig({ models: ONE_MODEL, retry: { baseDelayMs: 20, maxDelayMs: 50 } }).retry.maxDelayMs).toBe(50);
    expect(parseConfig({ models: ONE_MODEL, retry: { baseDelayMs: 1_000, maxDelayMs: 1_000 } }).retry.maxDelayMs).toBe(1_000);
    // A tenant override no job can carry (the job's own tenant rule).
    expect(lines({ models: ONE_MODEL, tenants: { overrides: { 'acme corp': { tpm: 10 } } } })).toEqual(['tenants.overrides.acme corp: expected 1-128 characters of letters, digits, . : @ _ -, got "acme corp"']);
    expect(parseConfig({ models: ONE_MODEL, tenants: { overrides: { 'team@acme.io:eu-1': { tpm: 10 } } } }).tenants.overrides['team@acme.io:eu-1']).toEqual({ tpm: 10 });
    // A lock renewed as often as it lasts; one shorter than the stalled interval is fine (BullMQ moves a job only once its lock is gone).
    expect(lines({ models: ONE_MODEL, dispatch: { lockMs: 500 } })[0]).toMatch(/^dispatch\.lockMs: expected at least 1000 .*, got 500$/);
    expect(parseConfig({ models: ONE_MODEL, dispatch: { lockMs: 1_000, stalledIntervalMs: 5_000 } }).dispatch.lockMs).toBe(1_000);
    // Weighted order with nothing to weigh.
    const zero = { weight: 0 };
    expect(lines({ models: ONE_MODEL, dispatch: { order: 'weighted' }, lanes: { critical: zero, high: zero, normal: zero, low: zero } })).toEqual([
      'lanes: every lane has weight 0, so dispatch.order "weighted" has no shares to give (the lanes would be taken in strict order): give the lanes weights, or set dispatch.order to "strict"',
    ]);
    expect(parseConfig({ models: ONE_MODEL, lanes: { critical: zero, high: zero, normal: zero, low: zero } }).dispatch.order).toBe('strict');
    expect(parseConfig({ models: ONE_MODEL, dispatch: { order: 'weighted' }, lanes: { critical: zero, high: zero, normal: zero } }).lanes.low.weight).toBe(0.1);
  });

  it('refuses a model whose request limit leaves no lane room for one call, with the arithmetic', () => {
    const err = configErrorOf(() => parseConfig({ models: { m: { provider: 'anthropic', limits: { rpm: 2, burst: 1 } } } }));
    expect(err.issues).toEqual([
      {
        path: 'models.m.limits',
        message: "rpm 2 x burst 1 / 60 = 0.03 requests fit in the pool's bucket, and even lane critical (reserve 0, the least) may draw at most 0.03 of them: every call needs 1, so every call would fail NEVER_FITS; raise burst to at least 30 (or rpm)",
      },
    ]);
    // One call fits exactly; the least reserve of any lane decides.
    expect(parseConfig({ models: { m: { provider: 'anthropic', limits: { rpm: 2, burst: 30 } } } }).models.m?.limits.burst).toBe(30);
    expect(parseConfig({ models: { m: { provider: 'anthropic', limits: { rpm: 1 } } } }).models.m?.limits.rpm).toBe(1);
    expect(configErrorOf(() => parseConfig({ models: { m: { provider: 'anthropic', limits: { rpm: 1 } } }, lanes: { critical: { reserve: 0.5 } } })).issues[0]?.message).toContain(
      'and even lane high (reserve 0.05, the least) may draw at most 0.95 of them: every call needs 1, so every call would fail NEVER_FITS; raise rpm',
    );
  });

  it('says where a problem is when it has no path, what a name may hold, and nothing about a type that is not wrong', () => {
    const message = (input: unknown) => configErrorOf(() => parseConfig(input)).message;
    expect(message({ models: ONE_MODEL, lanez: {} })).toContain('\n  (top level): unknown key "lanez"');
    expect(message(['models'])).toContain('(top level): expected the config: a mapping of sections (models:, lanes:, dispatch:, ...), got an array');
    expect(message({ models: ONE_MODEL, redis: { prefix: 'a b' } })).toContain('redis.prefix: expected 1-32 letters, digits, _ or -, got "a b"');
    expect(message({ models: { 'claude sonnet': { provider: 'anthropic' } } })).toContain('models.claude sonnet: expected a model name of 1-64 letters, digits, . : _ -, got "claude sonnet"');
    expect(message({ dispatch: {} })).toContain('models: required: the models the fleet serves');
    // A rule across fields is not about the type of what holds them.
    const fair = message({ models: ONE_MODEL, lanes: { low: { fairReserve: 0.6 } } });
    expect(fair).toMatch(/lanes\.low\.fairReserve: reserve \+ fairReserve must stay below 1 \(the share of a pool the lane leaves untouched\)$/);
    expect(fair).not.toContain('got');
  });

  it('says an empty file is empty', () => {
    for (const text of ['', '# nothing yet\n']) {
      const err = configErrorOf(() => loadConfig(writeYaml(text)));
      expect(err.issues).toEqual([{ path: '(file)', message: 'the file is empty (or holds only comments): it needs at least models:' }]);
    }
  });

  it('takes the Redis URL from the environment first', () => {
    const cfg = parseConfig({ redis: { url: 'redis://file:1' }, models: ONE_MODEL });
    expect(redisUrlOf(cfg, { REDIS_URL: 'redis://env:2' })).toBe('redis://env:2');
    expect(redisUrlOf(cfg, {})).toBe('redis://file:1');
  });
});
