/**
 * One adapter per provider, built from the config and the environment. Keys are read here, once,
 * and live only inside the SDK clients: never in Redis, jobs, logs or metrics.
 *
 * ```ts
 * const adapters = createAdapters(loadConfig('headroom.config.yaml'), process.env);
 * const result = await adapters[job.provider].call({ model, request: job.request, signal });
 * ```
 */
import { ConfigError, type HeadroomConfig, PROVIDERS, type Provider, registerSecret } from '@headroom/queue';
import { type AdapterOptions, AnthropicAdapter } from './anthropic.js';
import { OpenAIAdapter } from './openai.js';
import type { ProviderAdapter, ProviderCallFailure, ProviderCallInput, ProviderCallResult, ProviderStreamInput, ProviderStreamResult } from './types.js';

export { AnthropicAdapter, type AdapterOptions } from './anthropic.js';
export { OpenAIAdapter } from './openai.js';
export type {
  FailureKind,
  ProviderAdapter,
  ProviderCallFailure,
  ProviderCallInput,
  ProviderCallOk,
  ProviderCallResult,
  ProviderRequest,
  ProviderStreamInput,
  ProviderStreamResult,
  StreamProgress,
} from './types.js';

const ADAPTERS: Record<Provider, new (options: AdapterOptions) => ProviderAdapter> = {
  anthropic: AnthropicAdapter,
  openai: OpenAIAdapter,
};

function modelsOf(config: HeadroomConfig, provider: Provider): string[] {
  return Object.entries(config.models)
    .filter(([, model]) => model.provider === provider)
    .map(([name]) => name);
}

/**
 * The provider's key from the environment: the one place a worker reads one. It is registered as
 * a secret as it is read, so from then on this process's logs and Redis commands cut it out
 * (see @headroom/queue's redaction), whichever path would carry it there.
 */
export function providerKeyOf(config: HeadroomConfig, provider: Provider, env: NodeJS.ProcessEnv): string | undefined {
  const apiKey = env[config.providers[provider].apiKeyEnv]?.trim();
  if (!apiKey) return undefined;
  registerSecret(apiKey);
  return apiKey;
}

function optionsFor(config: HeadroomConfig, provider: Provider, env: NodeJS.ProcessEnv): AdapterOptions | { missing: string } {
  const { apiKeyEnv, baseURL, timeoutMs, streamIdleMs, streamTimeoutMs } = config.providers[provider];
  const apiKey = providerKeyOf(config, provider, env);
  if (!apiKey) return { missing: apiKeyEnv };
  return { apiKey, baseURL, timeoutMs, streamIdleMs, streamTimeoutMs };
}

/**
 * Adapters for both providers. A provider that some configured model uses must have its key:
 * a missing one throws `ConfigError` at startup, naming the variable. A provider no model uses
 * gets an adapter that reads its key on first call and, without one, answers every call with an
 * `auth` failure, so an unused provider never stops the worker.
 */
export function createAdapters(config: HeadroomConfig, env: NodeJS.ProcessEnv = process.env): Record<Provider, ProviderAdapter> {
  const adapters = {} as Record<Provider, ProviderAdapter>;
  const missing: { path: string; message: string }[] = [];
  for (const provider of PROVIDERS) {
    const models = modelsOf(config, provider);
    if (models.length === 0) {
      adapters[provider] = new LazyAdapter(provider, () => optionsFor(config, provider, env));
      continue;
    }
    const options = optionsFor(config, provider, env);
    if ('missing' in options) {
      missing.push({
        path: `providers.${provider}.apiKeyEnv`,
        message: `environment variable ${options.missing} is not set (needed by ${models.join(', ')})`,
      });
      continue;
    }
    adapters[provider] = new ADAPTERS[provider](options);
  }
  if (missing.length > 0) throw new ConfigError('(environment)', missing);
  return adapters;
}

class LazyAdapter implements ProviderAdapter {
  readonly provider: Provider;
  readonly #options: () => AdapterOptions | { missing: string };
  #adapter: ProviderAdapter | undefined;

  constructor(provider: Provider, options: () => AdapterOptions | { missing: string }) {
    this.provider = provider;
    this.#options = options;
  }

  call(input: ProviderCallInput): Promise<ProviderCallResult> {
    const adapter = this.#resolve();
    return 'message' in adapter ? Promise.resolve(adapter) : adapter.call(input);
  }

  stream(input: ProviderStreamInput): Promise<ProviderStreamResult> {
    const adapter = this.#resolve();
    return 'message' in adapter ? Promise.resolve({ ...adapter, progress: { events: 0, outputText: '' }, errorEvent: '' }) : adapter.stream(input);
  }

  #resolve(): ProviderAdapter | ProviderCallFailure {
    if (this.#adapter === undefined) {
      const options = this.#options();
      if ('missing' in options) {
        return { ok: false, kind: 'auth', status: null, message: `no API key for ${this.provider}: environment variable ${options.missing} is not set` };
      }
      this.#adapter = new ADAPTERS[this.provider](options);
    }
    return this.#adapter;
  }
}
