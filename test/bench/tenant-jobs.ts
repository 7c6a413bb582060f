/** The job every tenant of `pnpm bench:tenants` sends, shared by the bench and its flood process. */
import type { LlmJobInput } from '@headroom/producer-sdk';

export const MODEL = 'claude-sonnet-4-6';

export const tenantJob = (tenant: string, i: number): LlmJobInput => ({
  priority: 'NORMAL', tenant, provider: 'anthropic',
  request: { model: MODEL, max_tokens: 48, messages: [{ role: 'user', content: `tenant ${tenant} request ${i}: summarise this ticket please.` }] },
});
