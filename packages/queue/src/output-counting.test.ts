import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.js';
import { ConfigError } from './errors.js';
import { reservesOutputP95 } from './output-counting.js';

const issuesOf = (raw: unknown): string[] => {
  try {
    parseConfig(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
};

describe('output reservation by how the provider counts output', () => {
  it('refuses p95 for models whose provider charges max_tokens up front, naming each and why', () => {
    const issues = issuesOf({
      dispatch: { outputReservation: 'p95' },
      models: { 'claude-sonnet-4-6': { provider: 'anthropic' }, 'gpt-4.1': { provider: 'openai' } },
    });
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatch(/^dispatch\.outputReservation: p95 must 429: /);
    expect(issues[0]).toContain('claude-sonnet-4-6 (anthropic counts max_tokens toward output tokens/min (otpm) when a request starts)');
    expect(issues[0]).toContain('gpt-4.1 (openai counts max_tokens toward tokens/min (tpm) when a request starts)');
    expect(issues[0]).toContain('outputCounting: actual');
  });

  it('allows p95 when every model counts actual output, and reserves it only there', () => {
    const config = parseConfig({ dispatch: { outputReservation: 'p95' }, models: { proxy: { provider: 'anthropic', outputCounting: 'actual' } } });
    expect(reservesOutputP95(config.dispatch.outputReservation, config.models.proxy!)).toBe(true);
    expect(reservesOutputP95('max_tokens', config.models.proxy!)).toBe(false);
    expect(reservesOutputP95('p95', { provider: 'openai' })).toBe(false);
  });

  it('refuses an outputCounting that is neither max_tokens nor actual', () => {
    expect(issuesOf({ models: { m: { provider: 'anthropic', outputCounting: 'p95' } } })).toContain('models.m.outputCounting: expected "max_tokens" or "actual", got "p95"');
  });

  it('keeps max_tokens, the default, valid for both providers', () => {
    expect(issuesOf({ models: { a: { provider: 'anthropic' }, o: { provider: 'openai' } } })).toEqual([]);
  });
});
