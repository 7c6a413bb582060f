import { describe, expect, it } from 'vitest';
import { redactJobData, redactResult } from './payload-redaction.js';

describe('redactJobData', () => {
  it('replaces prompt text with its shape and keeps what operators debug with', () => {
    const data = {
      priority: 'HIGH',
      provider: 'anthropic',
      request: { model: 'claude-sonnet-4-6', max_tokens: 64, system: 'You are a secret agent', messages: [{ role: 'user', content: 'my SSN is 123' }] },
      metadata: { ticket: 4711 },
    };
    const out = redactJobData(data) as typeof data;
    expect(out.request).toEqual({ model: 'claude-sonnet-4-6', max_tokens: 64, system: '[redacted: 22 chars]', messages: '[redacted: 1 item]' });
    expect(out.metadata).toEqual({ ticket: 4711 });
    expect(JSON.stringify(out)).not.toContain('SSN');
    // The stored job is untouched.
    expect(data.request.messages[0]!.content).toBe('my SSN is 123');
  });

  it('passes through anything that is not a job', () => {
    expect(redactJobData(null)).toBeNull();
    expect(redactJobData({ other: 1 })).toEqual({ other: 1 });
  });
});

describe('redactResult', () => {
  it('keeps ids, usage and cost, drops the completion', () => {
    const result = {
      model: 'gpt-4.1',
      usage: { inputTokens: 10, outputTokens: 5 },
      response: { id: 'chatcmpl-1', model: 'gpt-4.1', choices: [{ finish_reason: 'stop', message: { content: 'the private answer' } }] },
    };
    const out = redactResult(result) as { response: Record<string, unknown>; usage: unknown };
    expect(out.usage).toEqual(result.usage);
    expect(out.response).toMatchObject({ id: 'chatcmpl-1', model: 'gpt-4.1', finish_reasons: ['stop'] });
    expect(JSON.stringify(out)).not.toContain('private answer');
  });
});
