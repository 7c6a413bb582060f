/**
 * A fleet with a gateway in front, in this test process: a worker and a gateway from the
 * packages' own entry points, on a Redis and a simulator the test file owns. The SDKs under test
 * are the unmodified official clients, pointed at the gateway by `baseURL` and a gateway key.
 */
import { randomUUID } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startGateway, type RunningGateway } from '@headroom/gateway';
import { createLogger, parseConfig, type HeadroomConfig, type HeadroomConfigInput } from '@headroom/queue';
import { Producer } from '@headroom/producer-sdk';
import { startSimulator, type Simulator, type SimulatorOptions } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startWorker, type RunningWorker } from '@headroom/worker';

export const SONNET = 'claude-sonnet-4-6';
export const HAIKU = 'claude-haiku-4-5';
export const GPT = 'gpt-4.1';
export const GPT_MINI = 'gpt-4.1-mini';

/**
 * Limits far above any test's load, given to both the simulator and the fleet: the bucket learns
 * the provider's limits from its headers, so a fleet configured above the provider would be held
 * to the provider's, and these tests are about the gateway, not the quota.
 */
const ANTHROPIC_LIMITS = { rpm: 60_000, itpm: 40_000_000, otpm: 10_000_000 };
const OPENAI_LIMITS = { rpm: 60_000, tpm: 40_000_000 };
export const SIM_MODELS = {
  [SONNET]: { provider: 'anthropic' as const, limits: ANTHROPIC_LIMITS, maxOutputTokens: 64_000, contextWindow: 200_000 },
  [HAIKU]: { provider: 'anthropic' as const, limits: ANTHROPIC_LIMITS, maxOutputTokens: 64_000, contextWindow: 200_000 },
  [GPT]: { provider: 'openai' as const, limits: OPENAI_LIMITS, maxOutputTokens: 32_768, contextWindow: 1_047_576 },
  [GPT_MINI]: { provider: 'openai' as const, limits: OPENAI_LIMITS, maxOutputTokens: 32_768, contextWindow: 1_047_576 },
};

/** Client keys: values in this env, named by the config. */
export const GATEWAY_KEYS = {
  app: 'hr-gw-app-key-0123456789abcdef',
  capped: 'hr-gw-capped-key-0123456789abcd',
  tenant: 'hr-gw-tenant-key-0123456789abcd',
};
export const PROVIDER_KEY = 'sk-provider-key-for-the-workers-0001';
const ENV = {
  GW_KEY_APP: GATEWAY_KEYS.app,
  GW_KEY_CAPPED: GATEWAY_KEYS.capped,
  GW_KEY_TENANT: GATEWAY_KEYS.tenant,
  GW_PROVIDER_KEY: PROVIDER_KEY,
};

export interface GatewayFleet {
  config: HeadroomConfig;
  prefix: string;
  gateway: RunningGateway;
  workers: RunningWorker[];
  anthropic(key?: string, opts?: { maxRetries?: number }): Anthropic;
  openai(key?: string, opts?: { maxRetries?: number }): OpenAI;
  /** One more gateway on the same lanes, with some of its settings changed; closed with the fleet. */
  gatewayWith(settings: Partial<HeadroomConfig['gateway']>): Promise<RunningGateway>;
  close(): Promise<void>;
}

export async function startGatewayFleet(
  redisUrl: string,
  sim: Simulator,
  overrides: Partial<HeadroomConfigInput> = {},
  options: { workers?: number } = {},
): Promise<GatewayFleet> {
  const prefix = `gw${randomUUID().slice(0, 8)}`;
  const config = parseConfig({
    redis: { prefix },
    providers: {
      anthropic: { baseURL: sim.url, apiKeyEnv: 'GW_PROVIDER_KEY', timeoutMs: 30_000 },
      openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: 'GW_PROVIDER_KEY', timeoutMs: 30_000 },
    },
    models: {
      [SONNET]: { provider: 'anthropic', limits: ANTHROPIC_LIMITS },
      // One Anthropic model with its output bound configured, which its models.list() entry shows as max_tokens.
      [HAIKU]: { provider: 'anthropic', limits: ANTHROPIC_LIMITS, maxOutputTokens: 64_000 },
      // As the simulator's: a call with no max_completion_tokens reserves it. GPT_MINI has none.
      [GPT]: { provider: 'openai', limits: OPENAI_LIMITS, maxOutputTokens: 32_768 },
      [GPT_MINI]: { provider: 'openai', limits: OPENAI_LIMITS },
    },
    gateway: {
      port: 0,
      host: '127.0.0.1',
      keys: {
        app: { keyEnv: 'GW_KEY_APP' },
        capped: { keyEnv: 'GW_KEY_CAPPED', maxPriority: 'normal', defaultPriority: 'low' },
        tenant: { keyEnv: 'GW_KEY_TENANT', tenant: 'acme' },
      },
      maxBodyBytes: 64 * 1024,
      bodyTimeoutMs: 1_000,
      metricsPort: 0,
    },
    ...overrides,
  });
  const logger = createLogger({ level: 'silent' });
  const workers: RunningWorker[] = [];
  for (let i = 0; i < (options.workers ?? 1); i++) workers.push(await startWorker({ config, redisUrl, env: ENV, logger }));
  const gateway = await startGateway({ config, redisUrl, env: ENV, logger });
  const more: RunningGateway[] = [];
  return {
    config,
    prefix,
    gateway,
    workers,
    anthropic: (key = GATEWAY_KEYS.app, opts = {}) => new Anthropic({ apiKey: key, baseURL: gateway.url, maxRetries: opts.maxRetries ?? 0 }),
    openai: (key = GATEWAY_KEYS.app, opts = {}) => new OpenAI({ apiKey: key, baseURL: `${gateway.url}/v1`, maxRetries: opts.maxRetries ?? 0 }),
    gatewayWith: async (settings) => {
      const g = await startGateway({ config: { ...config, gateway: { ...config.gateway, ...settings } }, redisUrl, env: ENV, logger });
      more.push(g);
      return g;
    },
    close: async () => {
      await Promise.all(more.map((g) => g.close()));
      await gateway.close();
      await Promise.all(workers.map((w) => w.close({ graceMs: 2_000 })));
    },
  };
}

export interface GatewayStack {
  redis: EmbeddedRedis;
  sim: Simulator;
  fleet: GatewayFleet;
  /** On the fleet's lanes: to read a job the gateway answered for (`headroom-job-id`). */
  producer: Producer;
  close(): Promise<void>;
}

/** A test file's whole stack: its own Redis and simulator, a fleet with a gateway, and a producer. */
export async function startGatewayStack(sim: SimulatorOptions, overrides: (sim: Simulator) => Partial<HeadroomConfigInput> = () => ({})): Promise<GatewayStack> {
  const redis = await startEmbeddedRedis();
  const simulator = await startSimulator({ models: SIM_MODELS, ...sim });
  const fleet = await startGatewayFleet(redis.url, simulator, overrides(simulator));
  const producer = new Producer({ redis: redis.url, prefix: fleet.prefix });
  return {
    redis,
    sim: simulator,
    fleet,
    producer,
    close: async () => {
      await producer.close();
      await fleet.close();
      await simulator.close();
      await redis.stop();
    },
  };
}
