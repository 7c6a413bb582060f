import { describe, expect, it } from 'vitest';
import type { Usage } from '@headroom/queue';
import type { ProviderRequest } from '../providers/types.js';
import { CACHE_SAFETY_MS, cacheBreakpoints, PromptCacheMemory } from './prompt-cache-memory.js';
import { estimateInputTokens, PER_MESSAGE_TOKENS } from './token-estimator.js';

const MODEL = 'claude-sonnet-4-6';
const SYSTEM = 'You answer questions about the attached handbook. '.repeat(200);
const request = (question: string, extra: Record<string, unknown> = {}): ProviderRequest =>
  ({
    model: MODEL,
    max_tokens: 64,
    system: [{ type: 'text', text: SYSTEM, cache_control: { type: 'ephemeral' } }],
    messages: [{ role: 'user', content: question }],
    ...extra,
  }) as unknown as ProviderRequest;
const usage = (cacheRead: number, cacheCreation: number): Usage => ({ inputTokens: 20, outputTokens: 10, cacheReadInputTokens: cacheRead, cacheCreationInputTokens: cacheCreation });

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

describe('cacheBreakpoints', () => {
  it('finds each cache_control block in cache order (tools, system, messages) and cuts the request there', () => {
    const req = {
      model: MODEL,
      max_tokens: 10,
      tools: [{ name: 't', input_schema: { type: 'object' }, cache_control: { type: 'ephemeral', ttl: '1h' } }],
      system: [{ type: 'text', text: 'rules' }, { type: 'text', text: 'more rules', cache_control: { type: 'ephemeral' } }],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'doc', cache_control: { type: 'ephemeral' } }, { type: 'text', text: 'question' }] },
      ],
    } as unknown as ProviderRequest;
    const bps = cacheBreakpoints(req);
    expect(bps.map((b) => b.ttlMs)).toEqual([3_600_000, 300_000, 300_000]);
    expect((bps[1]!.prefix() as unknown as { system: unknown[]; messages: unknown[] }).system).toHaveLength(2);
    expect((bps[2]!.prefix() as unknown as { messages: { content: unknown[] }[] }).messages[0]!.content).toHaveLength(1);
  });

  it('gives the same prefix the same hash whatever follows it, and a different prefix another', () => {
    const [a] = cacheBreakpoints(request('first question'));
    const [b] = cacheBreakpoints(request('another question'));
    const [c] = cacheBreakpoints({ ...request('x'), system: [{ type: 'text', text: `${SYSTEM}!`, cache_control: { type: 'ephemeral' } }] } as unknown as ProviderRequest);
    expect(a!.hash).toBe(b!.hash);
    expect(c!.hash).not.toBe(a!.hash);
    expect(cacheBreakpoints({ ...request('x'), model: 'claude-haiku-4-5' } as ProviderRequest)[0]!.hash).not.toBe(a!.hash);
  });

  it('finds none in a request without cache_control (a string system prompt cannot carry one)', () => {
    expect(cacheBreakpoints({ model: MODEL, max_tokens: 5, system: SYSTEM, messages: [{ role: 'user', content: 'hi' }] } as unknown as ProviderRequest)).toEqual([]);
  });
});

describe('PromptCacheMemory', () => {
  it("knows nothing before a call, then the prefix's own estimate once the provider reported caching it", () => {
    const c = clock();
    const memory = new PromptCacheMemory(c.now);
    expect(memory.cachedEstimate(MODEL, request('q1'))).toBe(0);
    memory.remember(MODEL, request('q1'), usage(0, 2400), c.now());
    const expected = estimateInputTokens({ model: MODEL, max_tokens: 1, system: [{ type: 'text', text: SYSTEM }], messages: [] } as unknown as ProviderRequest) - 3;
    expect(memory.cachedEstimate(MODEL, request('q2, a different question'))).toBe(expected);
    expect(expected).toBeGreaterThan(PER_MESSAGE_TOKENS + 1000);
    // Another model has a cache of its own.
    expect(memory.cachedEstimate('claude-haiku-4-5', request('q2'))).toBe(0);
  });

  it('learns nothing from a call whose usage shows no cache read or write (a prompt too short to cache)', () => {
    const memory = new PromptCacheMemory(clock().now);
    memory.remember(MODEL, request('q1'), usage(0, 0), 0);
    expect(memory.size).toBe(0);
  });

  it('forgets a prefix before its TTL runs out at the provider, counted from the call start; a hit refreshes it', () => {
    const c = clock();
    const memory = new PromptCacheMemory(c.now);
    memory.remember(MODEL, request('q1'), usage(0, 2400), c.now());
    c.advance(300_000 - CACHE_SAFETY_MS - 1);
    expect(memory.cachedEstimate(MODEL, request('q2'))).toBeGreaterThan(0);
    memory.remember(MODEL, request('q2'), usage(2400, 0), c.now());
    c.advance(300_000 - CACHE_SAFETY_MS - 1);
    expect(memory.cachedEstimate(MODEL, request('q3'))).toBeGreaterThan(0);
    c.advance(2);
    expect(memory.cachedEstimate(MODEL, request('q3'))).toBe(0);
  });

  it('keeps a 1 h breakpoint for an hour', () => {
    const c = clock();
    const memory = new PromptCacheMemory(c.now);
    const req = request('q', { system: [{ type: 'text', text: SYSTEM, cache_control: { type: 'ephemeral', ttl: '1h' } }] });
    memory.remember(MODEL, req, usage(0, 2400), c.now());
    c.advance(50 * 60_000);
    expect(memory.cachedEstimate(MODEL, req)).toBeGreaterThan(0);
  });

  it('uses the longest remembered prefix', () => {
    const c = clock();
    const memory = new PromptCacheMemory(c.now);
    const twoLevels = (question: string) =>
      request(question, { messages: [{ role: 'user', content: [{ type: 'text', text: 'A long document. '.repeat(300), cache_control: { type: 'ephemeral' } }, { type: 'text', text: question }] }] });
    memory.remember(MODEL, request('q'), usage(0, 2400), c.now());
    const systemOnly = memory.cachedEstimate(MODEL, twoLevels('x'));
    memory.remember(MODEL, twoLevels('x'), usage(2400, 1500), c.now());
    expect(memory.cachedEstimate(MODEL, twoLevels('y'))).toBeGreaterThan(systemOnly + 900);
  });
});
