/**
 * The batch API clients for the providers the config names, keyed from the environment like the
 * interactive adapters (keys live only inside the SDK clients). A provider without a key gets no
 * client: its BATCH jobs fail with a reason instead of stopping the worker.
 */
import type { HeadroomConfig, Provider } from '@headroom/queue';
import { providerKeyOf } from '../providers/index.js';
import { AnthropicBatchApi } from './anthropic-batch-api.js';
import type { BatchApi } from './batch-api.js';
import { OpenAIBatchApi } from './openai-batch-api.js';

export type BatchApis = Partial<Record<Provider, BatchApi>>;

export function createBatchApis(config: HeadroomConfig, env: NodeJS.ProcessEnv = process.env): BatchApis {
  const apis: BatchApis = {};
  for (const provider of ['anthropic', 'openai'] as const) {
    const { baseURL, timeoutMs } = config.providers[provider];
    const apiKey = providerKeyOf(config, provider, env);
    if (!apiKey) continue;
    const options = { apiKey, baseURL, timeoutMs };
    apis[provider] = provider === 'anthropic' ? new AnthropicBatchApi(options) : new OpenAIBatchApi(options);
  }
  return apis;
}
