import { ConfigError, type HeadroomConfigInput, parseConfig } from '@headroom/queue';
import { type Simulator, startSimulator } from '@headroom/simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdapters } from './index.js';

let sim: Simulator;
beforeAll(async () => {
  sim = await startSimulator({ latencyMs: 0, apiKeys: ['sk-ant-fleet', 'sk-oai-fleet'] });
});
afterAll(async () => {
  await sim.close();
});

const config = (models: HeadroomConfigInput['models']) =>
  parseConfig({
    providers: {
      anthropic: { baseURL: sim.url, apiKeyEnv: 'HR_TEST_ANTHROPIC_KEY', timeoutMs: 5000 },
      openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: 'HR_TEST_OPENAI_KEY', timeoutMs: 5000 },
    },
    models,
  });

describe('createAdapters', () => {
  it('builds both adapters from the config and the named env variables', async () => {
    const adapters = createAdapters(
      config({ 'claude-sonnet-4-6': { provider: 'anthropic' }, 'gpt-4.1': { provider: 'openai' } }),
      { HR_TEST_ANTHROPIC_KEY: 'sk-ant-fleet', HR_TEST_OPENAI_KEY: 'sk-oai-fleet' },
    );
    const a = await adapters.anthropic.call({ model: 'claude-sonnet-4-6', request: { model: 'claude-sonnet-4-6', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } });
    const o = await adapters.openai.call({ model: 'gpt-4.1', request: { model: 'gpt-4.1', max_completion_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } });
    expect([a.ok, o.ok]).toEqual([true, true]);
    expect(adapters.anthropic.provider).toBe('anthropic');
    expect(adapters.openai.provider).toBe('openai');
  });

  it('refuses to start when a provider some model uses has no key, naming the variable and the models', () => {
    const build = () => createAdapters(config({ 'claude-sonnet-4-6': { provider: 'anthropic' }, 'gpt-4.1': { provider: 'openai' } }), { HR_TEST_OPENAI_KEY: 'sk-oai-fleet' });
    expect(build).toThrow(ConfigError);
    expect(build).toThrow(/providers\.anthropic\.apiKeyEnv: environment variable HR_TEST_ANTHROPIC_KEY is not set \(needed by claude-sonnet-4-6\)/);
  });

  it('does not stop the worker for a provider no model uses; its calls fail as auth, naming the variable', async () => {
    const adapters = createAdapters(config({ 'claude-sonnet-4-6': { provider: 'anthropic' } }), { HR_TEST_ANTHROPIC_KEY: 'sk-ant-fleet' });
    const result = await adapters.openai.call({ model: 'gpt-4.1', request: { model: 'gpt-4.1', max_completion_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } });
    expect(result).toMatchObject({ ok: false, kind: 'auth', status: null, message: 'no API key for openai: environment variable HR_TEST_OPENAI_KEY is not set' });
  });

  it('reads the key of an unused provider lazily, on its first call', async () => {
    const env: NodeJS.ProcessEnv = { HR_TEST_ANTHROPIC_KEY: 'sk-ant-fleet' };
    const adapters = createAdapters(config({ 'claude-sonnet-4-6': { provider: 'anthropic' } }), env);
    env.HR_TEST_OPENAI_KEY = 'sk-oai-fleet';
    const result = await adapters.openai.call({ model: 'gpt-4.1', request: { model: 'gpt-4.1', max_completion_tokens: 16, messages: [{ role: 'user', content: 'hi' }] } });
    expect(result.ok).toBe(true);
  });
});
