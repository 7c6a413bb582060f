import { describe, expect, it } from 'vitest';
import { parseConfig, type LlmJob } from '@headroom/queue';
import { ladderOf } from './model-ladder.js';

const config = parseConfig({
  models: {
    sonnet: { provider: 'anthropic', fallback: ['haiku'] },
    haiku: { provider: 'anthropic', fallback: ['opus'] },
    opus: { provider: 'anthropic' },
  },
});
const job = (model: string, fallback?: string[]) => ({ request: { model }, ...(fallback ? { fallback } : {}) }) as Pick<LlmJob, 'request' | 'fallback'>;

describe('ladderOf', () => {
  it("uses the primary's configured fallback when the job gives none", () => {
    expect(ladderOf(config, job('sonnet'))).toEqual(['sonnet', 'haiku']);
  });

  it("lets the job's own fallback win over the config's", () => {
    expect(ladderOf(config, job('sonnet', ['opus']))).toEqual(['sonnet', 'opus']);
  });

  it('keeps an empty fallback on the job: the primary alone', () => {
    expect(ladderOf(config, job('sonnet', []))).toEqual(['sonnet']);
  });

  it("reads only the primary's list, never chaining its fallbacks' own", () => {
    expect(ladderOf(config, job('haiku'))).toEqual(['haiku', 'opus']);
    expect(ladderOf(config, job('sonnet'))).not.toContain('opus');
  });

  it('leaves a model the config does not know as its own ladder', () => {
    expect(ladderOf(config, job('gpt-9'))).toEqual(['gpt-9']);
  });
});
