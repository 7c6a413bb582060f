/**
 * What the demo runs: its fleet config (small limits, so pressure shows within a minute) and a
 * deterministic mixed workload across every lane, both providers and the batch lane.
 */
import type { HeadroomConfig, HeadroomConfigInput, LlmJobInput, Priority } from '@headroom/queue';

export function hasRealKeys(env: NodeJS.ProcessEnv): boolean {
  return Boolean(env.ANTHROPIC_API_KEY || env.OPENAI_API_KEY);
}

/** The variable the demo's gateway reads its one client key from. */
export const DEMO_GATEWAY_KEY_ENV = 'HEADROOM_DEMO_GATEWAY_KEY';

export function demoConfig(opts: { prefix: string; simUrl: string | undefined; dashboardPort: number; gatewayPort: number }): HeadroomConfigInput {
  const sim = opts.simUrl;
  return {
    redis: { prefix: opts.prefix },
    providers: sim
      ? { anthropic: { baseURL: sim, apiKeyEnv: 'HEADROOM_DEMO_KEY' }, openai: { baseURL: `${sim}/v1`, apiKeyEnv: 'HEADROOM_DEMO_KEY' } }
      : {},
    models: {
      'claude-sonnet-4-6': {
        provider: 'anthropic',
        pool: 'sonnet-4',
        limits: { rpm: 240, itpm: 60_000, otpm: 16_000 },
        pricing: { inputPerMTok: 3, outputPerMTok: 15 },
        fallback: ['claude-haiku-4-5'],
      },
      'claude-haiku-4-5': { provider: 'anthropic', pool: 'haiku-4', limits: { rpm: 240, itpm: 60_000, otpm: 16_000 }, pricing: { inputPerMTok: 1, outputPerMTok: 5 } },
      'gpt-4.1-mini': { provider: 'openai', limits: { rpm: 240, tpm: 80_000 }, pricing: { inputPerMTok: 0.4, outputPerMTok: 1.6 }, maxOutputTokens: 32_768 },
    },
    lanes: { low: { maxWaitMs: 15_000 } },
    dispatch: { concurrency: 16, lockMs: 15_000, stalledIntervalMs: 5_000, shutdownGraceMs: 5_000 },
    shedding: { horizonMs: 20_000 },
    tenants: { overrides: { runaway: { tpm: 3_000, maxQueued: 20 } } },
    batch: { maxRequests: 50, maxWaitMs: 3_000, pollIntervalMs: 1_000 },
    dashboard: { port: opts.dashboardPort, host: '127.0.0.1' },
    gateway: { port: opts.gatewayPort, host: '127.0.0.1', keys: { demo: { keyEnv: DEMO_GATEWAY_KEY_ENV } } },
  };
}

const PRIORITY_MIX: [Priority | 'BATCH', number][] = [['CRITICAL', 5], ['HIGH', 15], ['NORMAL', 30], ['LOW', 40], ['BATCH', 10]];
const TOPICS = ['a refund request', 'a failed deploy', 'a login loop', 'an invoice question', 'a feature idea', 'a slow dashboard'];

/** Job `i` of the demo's stream: the same `i` always gives the same job. */
export function demoJob(i: number, overrides: Partial<LlmJobInput> = {}): LlmJobInput {
  const r = (i * 7919) % 100;
  let acc = 0;
  const kind = PRIORITY_MIX.find(([, w]) => {
    acc += w;
    return acc > r;
  })?.[0] ?? 'NORMAL';
  const openai = i % 10 < 3;
  // Long-tailed prompt sizes, like real traffic: mostly short, a few long.
  const repeat = 1 + ((i * 31) % 7) ** 2;
  const content = `Summarise ${TOPICS[i % TOPICS.length]} (ticket ${i}) for the on-call engineer. ${'Context line with details. '.repeat(repeat)}`;
  const maxTokens = 64 + ((i * 13) % 4) * 64;
  // Some OpenAI jobs call the Responses API.
  const responses = openai && i % 10 === 2;
  const base = responses
    ? { provider: 'openai' as const, api: 'responses' as const, request: { model: 'gpt-4.1-mini', max_output_tokens: maxTokens, input: content } }
    : openai
    ? { provider: 'openai' as const, request: { model: 'gpt-4.1-mini', max_completion_tokens: maxTokens, messages: [{ role: 'user' as const, content }] } }
    : { provider: 'anthropic' as const, request: { model: 'claude-sonnet-4-6', max_tokens: maxTokens, messages: [{ role: 'user' as const, content }] }, fallback: ['claude-haiku-4-5'] };
  return {
    ...base,
    priority: kind === 'BATCH' ? 'LOW' : kind,
    ...(kind === 'BATCH' ? { sla: 'none' as const } : {}),
    ...(kind === 'LOW' && i % 2 === 0 ? { onShed: 'batch' as const } : {}),
    tenant: `team-${i % 4}`,
    metadata: { demo: i },
    ...overrides,
  } as LlmJobInput;
}

/** With real keys: one tiny request per lane on each provider that has a key. */
export function realJobs(config: HeadroomConfig): LlmJobInput[] {
  const jobs: LlmJobInput[] = [];
  const lanes: Priority[] = ['CRITICAL', 'HIGH', 'NORMAL', 'LOW'];
  for (const priority of lanes) {
    if (process.env[config.providers.anthropic.apiKeyEnv]) {
      jobs.push({ priority, provider: 'anthropic', request: { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: `Say hello to the ${priority} lane.` }] } });
    }
    if (process.env[config.providers.openai.apiKeyEnv]) {
      jobs.push({ priority, provider: 'openai', request: { model: 'gpt-4.1-mini', max_completion_tokens: 16, messages: [{ role: 'user', content: `Say hello to the ${priority} lane.` }] } });
    }
  }
  return jobs;
}
