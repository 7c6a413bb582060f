import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { coalesceKeyOf, idempotencyDigestOf, idempotentJobId } from './job-ids.js';
import type { LlmJob } from './job.js';
import { parseJob } from './job-validation.js';

const { job } = parseJob({
  priority: 'NORMAL',
  provider: 'anthropic',
  request: { model: 'claude-sonnet-4-6', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }] },
});

/**
 * The key a job of `provider`'s model asking "Hi" for 64 tokens, with no fallback, tenant or
 * scope, hashed to before fallback [], scopes and written-out defaults counted: a rolling
 * upgrade keeps coalescing such jobs only while it stays the same.
 */
function keyHashedBefore(provider: string, model: string, betas?: readonly string[]): string {
  const betasField = betas === undefined ? '' : `"betas":${JSON.stringify(betas)},`;
  return createHash('sha256')
    .update(`{${betasField}"fallback":[],"provider":"${provider}","request":{"max_tokens":64,"messages":[{"content":"Hi","role":"user"}],"model":"${model}"}}`)
    .digest('hex')
    .slice(0, 40);
}

describe('coalesceKeyOf', () => {
  it('keeps a job with no fallback (the config ladder) and one with fallback [] (the primary alone) apart', () => {
    expect(coalesceKeyOf({ ...job, fallback: [] })).not.toBe(coalesceKeyOf(job));
    // Neither of them meets an explicit ladder either.
    expect(coalesceKeyOf({ ...job, fallback: ['claude-haiku-4-5'] })).not.toBe(coalesceKeyOf(job));
    expect(coalesceKeyOf({ ...job, fallback: ['claude-haiku-4-5'] })).not.toBe(coalesceKeyOf({ ...job, fallback: [] }));
    expect(coalesceKeyOf({ ...job, fallback: [] })).toBe(coalesceKeyOf({ ...job, fallback: [] }));
  });

  it("keeps a job that moves to the batch lane when shed apart from one that fails, which is what no onShed does", () => {
    const low = { ...job, priority: 'LOW' as const };
    expect(coalesceKeyOf({ ...low, onShed: 'batch' })).not.toBe(coalesceKeyOf(low));
    expect(coalesceKeyOf({ ...low, onShed: 'batch' })).not.toBe(coalesceKeyOf({ ...low, onShed: 'fail' }));
    expect(coalesceKeyOf({ ...low, onShed: 'fail' })).toBe(coalesceKeyOf(low));
  });

  it('keeps the key a job without fallback, tenant or scope always had', () => {
    // What the key hashed before fallback [] and scopes counted: a rolling upgrade keeps coalescing such jobs.
    expect(coalesceKeyOf(job)).toBe(keyHashedBefore('anthropic', 'claude-sonnet-4-6'));
  });

  it("gives a job that writes a default out (api 'chat', onShed 'fail') the key of the job that leaves it out, and keeps that key", () => {
    const chat = { priority: 'NORMAL', provider: 'openai', request: { model: 'gpt-4.1', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }] } } as const;
    const left = parseJob(chat).job;
    // Parsed (the producer's path) or not (a caller of coalesceKeyOf with a job of its own).
    expect(coalesceKeyOf(parseJob({ ...chat, api: 'chat' }).job)).toBe(coalesceKeyOf(left));
    expect(coalesceKeyOf({ ...left, api: 'chat' })).toBe(coalesceKeyOf(left));
    expect(coalesceKeyOf(parseJob({ ...chat, api: 'chat', sla: 'interactive', coalesce: false, onShed: 'fail' }).job)).toBe(coalesceKeyOf(left));
    // The other API is another request.
    const responses = parseJob({ priority: 'NORMAL', provider: 'openai', api: 'responses', request: { model: 'gpt-4.1', max_output_tokens: 64, input: 'Hi' } }).job;
    expect(coalesceKeyOf(responses)).not.toBe(coalesceKeyOf({ ...responses, api: undefined }));
    // A job that never named its API keeps the key it had: a rolling upgrade keeps coalescing it.
    expect(coalesceKeyOf(left)).toBe(keyHashedBefore('openai', 'gpt-4.1'));
  });

  it('gives a request that writes a documented default out (stream false, OpenAI n 1, OpenAI null) the key of the one that leaves it out', () => {
    const anthropic = (request: Record<string, unknown>) => parseJob({ ...job, request: { ...job.request, ...request } }).job;
    expect(coalesceKeyOf(anthropic({ stream: false }))).toBe(coalesceKeyOf(job));
    expect(coalesceKeyOf(anthropic({ stream: true }))).not.toBe(coalesceKeyOf(job));
    // Sent as the client wrote it: only the key leaves the default out.
    expect(anthropic({ stream: false }).request).toMatchObject({ stream: false });
    const chat = (request: Record<string, unknown>) => parseJob({ priority: 'NORMAL', provider: 'openai', request: { model: 'gpt-4.1', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }], ...request } }).job;
    const plain = coalesceKeyOf(chat({}));
    for (const written of [{ stream: false }, { stream: null }, { n: 1 }, { n: null }, { stream_options: null }, { temperature: null }, { stream: false, n: 1, stream_options: null }]) {
      expect(coalesceKeyOf(chat(written)), JSON.stringify(written)).toBe(plain);
    }
    // Another value asks for another answer; a default the provider does not document is not assumed.
    expect(coalesceKeyOf(chat({ n: 2 }))).not.toBe(plain);
    expect(coalesceKeyOf(chat({ temperature: 1 }))).not.toBe(plain);
    expect(coalesceKeyOf(chat({ stream: true, stream_options: { include_usage: true } }))).not.toBe(coalesceKeyOf(chat({ stream: true })));
    const responses = (request: Record<string, unknown>) => parseJob({ priority: 'NORMAL', provider: 'openai', api: 'responses', request: { model: 'gpt-4.1', max_output_tokens: 64, input: 'Hi', ...request } }).job;
    expect(coalesceKeyOf(responses({ stream: false, background: false, instructions: null }))).toBe(coalesceKeyOf(responses({})));
    // The job that writes none keeps the key it always had.
    expect(plain).toBe(keyHashedBefore('openai', 'gpt-4.1'));
  });

  it("gives one key to a call's Anthropic betas in any order or repeated, and keeps the order they are sent in", () => {
    const withBetas = (betas: string[]) => parseJob({ ...job, betas }).job;
    const sorted = ['context-1m-2025-08-07', 'interleaved-thinking-2025-05-14'];
    const reversed = withBetas([...sorted].reverse());
    expect(coalesceKeyOf(reversed)).toBe(coalesceKeyOf(withBetas(sorted)));
    expect(coalesceKeyOf(withBetas([...sorted, sorted[0]!]))).toBe(coalesceKeyOf(withBetas(sorted)));
    expect(coalesceKeyOf(withBetas([sorted[0]!]))).not.toBe(coalesceKeyOf(withBetas(sorted)));
    // What goes to the provider is the caller's header, in its order.
    expect(reversed).toMatchObject({ betas: [...sorted].reverse() });
    // Betas already in order, once each, keep the key they had.
    expect(coalesceKeyOf(withBetas(sorted))).toBe(keyHashedBefore('anthropic', 'claude-sonnet-4-6', sorted));
  });

  it('coalesces within a scope only: two scopes, or a scope and none, are two jobs', () => {
    expect(coalesceKeyOf({ ...job, scope: 'gateway-key:app' })).toBe(coalesceKeyOf({ ...job, scope: 'gateway-key:app' }));
    expect(coalesceKeyOf({ ...job, scope: 'gateway-key:app' })).not.toBe(coalesceKeyOf({ ...job, scope: 'gateway-key:capped' }));
    expect(coalesceKeyOf({ ...job, scope: 'gateway-key:app' })).not.toBe(coalesceKeyOf(job));
    // A scope is not a tenant of the same name.
    expect(coalesceKeyOf({ ...job, scope: 'acme' })).not.toBe(coalesceKeyOf({ ...job, tenant: 'acme' }));
  });
});

describe('idempotentJobId', () => {
  it('scopes a key per scope as per tenant, and keeps the ids of keys with neither or a tenant only', () => {
    const sha = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 40);
    expect(idempotentJobId('normal', 'k')).toBe(`normal.idem-${sha('k')}`);
    expect(idempotentJobId('normal', 'k', 'acme')).toBe(`normal.idem-${sha('tenant\u0000acme\u0000k')}`);
    const app = idempotentJobId('normal', 'k', undefined, 'gateway-key:app');
    expect(app).not.toBe(idempotentJobId('normal', 'k', undefined, 'gateway-key:capped'));
    expect(app).not.toBe(idempotentJobId('normal', 'k'));
    expect(app).toBe(idempotentJobId('normal', 'k', undefined, 'gateway-key:app'));
    expect(idempotentJobId('normal', 'k', 'acme', 'x')).not.toBe(idempotentJobId('normal', 'k', 'acme'));
  });
});

describe('idempotencyDigestOf', () => {
  const keyed = (request: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => parseJob({ ...job, idempotencyKey: 'k', request: { ...job.request, ...request }, ...extra }).job;

  it('reads a request as coalescing does: every request one coalescing key joins, with the same job fields, has one digest', () => {
    const chat = (request: Record<string, unknown>) => parseJob({ priority: 'NORMAL', provider: 'openai', idempotencyKey: 'k', request: { model: 'gpt-4.1', max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }], ...request } }).job;
    const pairs: [LlmJob, LlmJob][] = [
      [keyed(), keyed({ stream: false })],
      [keyed({}, { betas: ['b-2', 'a-1'] }), keyed({}, { betas: ['a-1', 'b-2', 'a-1'] })],
      [chat({}), chat({ n: 1, stream: null, stream_options: null, temperature: null })],
      [chat({}), parseJob({ priority: 'NORMAL', provider: 'openai', api: 'chat', sla: 'interactive', idempotencyKey: 'k', request: { messages: [{ content: 'Hi', role: 'user' }], model: 'gpt-4.1', max_tokens: 64 } }).job],
    ];
    for (const [a, b] of pairs) {
      expect(coalesceKeyOf(a), JSON.stringify(b)).toBe(coalesceKeyOf(b));
      expect(idempotencyDigestOf(a), JSON.stringify(b)).toBe(idempotencyDigestOf(b));
    }
    // A sha256 in hex: the add script tells it from an alias's older sha1 by its length.
    expect(idempotencyDigestOf(keyed())).toMatch(/^[0-9a-f]{64}$/);
  });

  it("leaves each caller's deadline out, and reads every other field of the job, those coalescing leaves out too", () => {
    expect(idempotencyDigestOf(keyed({}, { maxWaitMs: 1_000 }))).toBe(idempotencyDigestOf(keyed()));
    const others = [keyed({ max_tokens: 65 }), keyed({ stream: true }), keyed({ temperature: 1 }), keyed({}, { metadata: { order: 2 } }), keyed({}, { fallback: [] }), keyed({}, { coalesce: true }), keyed({}, { priority: 'HIGH' }), keyed({}, { tenant: 'acme' })];
    const digests = new Set([keyed(), ...others].map(idempotencyDigestOf));
    expect(digests.size).toBe(others.length + 1);
    // Metadata is one the coalescing key does not read; the digest does (the job holds it for its callers).
    expect(coalesceKeyOf(keyed({}, { metadata: { order: 2 } }))).toBe(coalesceKeyOf(keyed()));
  });
});
