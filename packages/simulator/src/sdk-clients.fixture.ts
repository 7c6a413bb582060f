/**
 * The simulator with both official SDK clients pointed at it, as this package's SDK-level tests
 * start it: one OpenAI and one Anthropic model with limits no test reaches, 30 output tokens an
 * answer. Test-only (not built: tsconfig.build.json leaves `*.fixture.ts` out).
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { type Simulator, startSimulator } from './index.js';

export const GPT = 'gpt-4o-mini';
export const CLAUDE = 'claude-haiku-4-5';
const KEY = 'sk-test';

export interface SdkClients {
  sim: Simulator;
  openai: OpenAI;
  anthropic: Anthropic;
}

export async function simulatorWithClients(): Promise<SdkClients> {
  const sim = await startSimulator({
    latencyMs: 0,
    outputTokens: 30,
    apiKeys: [KEY],
    models: {
      [GPT]: { provider: 'openai', limits: { rpm: 1000, tpm: 1_000_000 } },
      [CLAUDE]: { provider: 'anthropic', limits: { rpm: 1000, itpm: 1_000_000, otpm: 1_000_000 } },
    },
  });
  return {
    sim,
    openai: new OpenAI({ apiKey: KEY, baseURL: `${sim.url}/v1`, maxRetries: 0 }),
    anthropic: new Anthropic({ apiKey: KEY, baseURL: sim.url, maxRetries: 0 }),
  };
}

/** What `promise` rejects with; throws when it resolves. */
export async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}
