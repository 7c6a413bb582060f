import { describe, expect, it } from 'vitest';
import { batchLimitsFor, ClaimAssembler, type IncomingJob, PROVIDER_BATCH_LIMITS } from './claim-assembler.js';

function assembler(limits = { maxRequests: 3, maxBytes: 1_000 }, maxWaitMs = 1_000) {
  let n = 0;
  return new ClaimAssembler({ limitsOf: () => limits, maxWaitMs, newClaimId: () => `c${++n}` });
}
const job = (model: string, enqueuedAt = 0, bytes = 10, provider: IncomingJob['provider'] = 'openai'): IncomingJob => ({ provider, model, bytes, enqueuedAt });

describe('ClaimAssembler', () => {
  it('keeps one claim per provider and model, and seals a claim at N requests', () => {
    const a = assembler();
    const ids = [job('m1'), job('m2'), job('m1'), job('m1'), job('m1')].map((j) => a.add(j, 0).claim.id);
    expect(ids).toEqual(['c1', 'c2', 'c1', 'c1', 'c3']);
    expect(a.takeDue(0, false).map((c) => [c.id, c.count])).toEqual([['c1', 3]]);
    expect(a.all().map((c) => c.id).sort()).toEqual(['c2', 'c3']);
  });

  it('separates the same model name under two providers', () => {
    const a = assembler();
    expect(a.add(job('same', 0, 10, 'openai'), 0).claim.id).not.toBe(a.add(job('same', 0, 10, 'anthropic'), 0).claim.id);
  });

  it("keeps a model's Responses jobs in claims of their own (one OpenAI batch holds one endpoint's requests)", () => {
    const a = assembler();
    const chat = a.add(job('m'), 0).claim;
    const responses = a.add({ ...job('m'), api: 'responses' }, 0).claim;
    expect(responses.id).not.toBe(chat.id);
    expect(responses.api).toBe('responses');
    expect(chat.api).toBeUndefined();
    expect(a.add({ ...job('m'), api: 'responses' }, 0).claim.id).toBe(responses.id);
    expect(a.add(job('m'), 0).claim.id).toBe(chat.id);
  });

  it('seals a claim before the job that would take it past the byte limit', () => {
    const a = assembler({ maxRequests: 100, maxBytes: 25 });
    expect(a.add(job('m', 0, 10), 0).claim.id).toBe('c1');
    expect(a.add(job('m', 0, 10), 0).claim.id).toBe('c1');
    expect(a.add(job('m', 0, 10), 0).claim.id).toBe('c2');
    expect(a.takeDue(0, false).map((c) => [c.id, c.count, c.bytes])).toEqual([['c1', 2, 20]]);
  });

  it('submits a partial claim T after its oldest job, once the lane is drained', () => {
    const a = assembler({ maxRequests: 100, maxBytes: 1_000 }, 1_000);
    a.add(job('m', 500), 600);
    a.add(job('m', 100), 700);
    expect(a.nextDueAt()).toBe(1_100);
    expect(a.takeDue(1_099, true)).toEqual([]);
    expect(a.takeDue(1_100, false)).toEqual([]); // a backlog is still coming in: fill first
    expect(a.takeDue(1_100, true).map((c) => c.count)).toEqual([2]);
  });

  it('submits a waiting claim after T of its own even while other groups keep the lane busy', () => {
    const a = assembler({ maxRequests: 100, maxBytes: 1_000 }, 1_000);
    a.add(job('rare', 0), 5_000);
    expect(a.takeDue(5_999, false)).toEqual([]);
    expect(a.takeDue(6_000, false).map((c) => c.model)).toEqual(['rare']);
  });

  it('caps N at each provider ceiling', () => {
    expect(batchLimitsFor('openai', 100_000).maxRequests).toBe(50_000);
    expect(batchLimitsFor('anthropic', 100_000).maxRequests).toBe(100_000);
    expect(batchLimitsFor('anthropic', 500)).toEqual({ maxRequests: 500, maxBytes: PROVIDER_BATCH_LIMITS.anthropic.maxBytes });
    expect(PROVIDER_BATCH_LIMITS.openai.maxBytes).toBeLessThan(200 * 1024 * 1024);
  });
});
