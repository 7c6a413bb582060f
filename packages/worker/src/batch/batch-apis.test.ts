import { type Simulator, startSimulator } from '@headroom/simulator';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicBatchApi } from './anthropic-batch-api.js';
import type { BatchApi, BatchEntry, BatchStatus, EntryOutcome } from './batch-api.js';
import { customIdOf } from './custom-id.js';
import { OpenAIBatchApi } from './openai-batch-api.js';

const KEY = 'sk-batch-api-test-0123456789SECRET';
const CLAUDE = 'claude-haiku-4-5';
const GPT = 'gpt-4o-mini';
let sim: Simulator;

beforeAll(async () => {
  sim = await startSimulator({ latencyMs: 0, outputTokens: 12, batchCompletionMs: 300, apiKeys: [KEY] });
});
afterEach(() => sim.clearFaults());
afterAll(() => sim.close());

const anthropic = () => new AnthropicBatchApi({ apiKey: KEY, baseURL: sim.url, timeoutMs: 10_000 });
const openai = () => new OpenAIBatchApi({ apiKey: KEY, baseURL: `${sim.url}/v1`, timeoutMs: 10_000 });

function entries(provider: 'anthropic' | 'openai', n: number, model: string): BatchEntry[] {
  return Array.from({ length: n }, (_, i) => ({
    customId: customIdOf(provider, `batch.job-${i}`),
    request: provider === 'anthropic'
      ? { model, max_tokens: 50, messages: [{ role: 'user' as const, content: `question ${i}` }] }
      : { model, max_completion_tokens: 50, messages: [{ role: 'user' as const, content: `question ${i}` }] },
  })) as BatchEntry[];
}

async function ended(api: BatchApi, batchId: string): Promise<Extract<BatchStatus, { ended: true }>> {
  for (let i = 0; i < 100; i++) {
    const status = await api.status(batchId);
    if (status.ended) return status;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('batch never ended');
}

async function resultsOf(api: BatchApi, batchId: string): Promise<Map<string, EntryOutcome>> {
  const out = new Map<string, EntryOutcome>();
  for await (const entry of api.results(batchId)) out.set(entry.customId, entry.outcome);
  return out;
}

describe.each([
  ['anthropic', anthropic, CLAUDE],
  ['openai', openai, GPT],
] as const)('%s batch API against the simulator', (provider, make, model) => {
  it('submits, polls to the end, and maps every entry to its own outcome', async () => {
    const api = make();
    const batch = entries(provider, 4, model);
    sim.injectBatchFaults({ errored: [batch[1]!.customId], expired: [batch[2]!.customId] });
    let uploaded: string | undefined;
    const outcome = await api.submit({ claimId: `claim-${provider}`, model, entries: batch, timeoutMs: 10_000, onFileUploaded: async (id) => {
        uploaded = id;
      },
    });
    if (outcome.kind !== 'created') throw new Error(JSON.stringify(outcome));
    expect(uploaded !== undefined).toBe(provider === 'openai');
    expect(await api.status(outcome.batchId)).toEqual({ ended: false });
    const status = await ended(api, outcome.batchId);
    expect(status.endedAt).toBeGreaterThan(0);
    const results = await resultsOf(api, outcome.batchId);
    expect([...results.keys()].sort()).toEqual(batch.map((e) => e.customId).sort());
    expect(results.get(batch[0]!.customId)).toMatchObject({ kind: 'succeeded', usage: { outputTokens: 12 } });
    // The provider's own failure and the expiry: sent again in a later batch.
    expect(results.get(batch[1]!.customId)).toMatchObject({ kind: 'requeue', failure: { code: 'BATCH_ERRORED', message: expect.stringMatching(/api_error|server_error/) } });
    expect(results.get(batch[2]!.customId)).toMatchObject({ kind: 'requeue', failure: { code: 'BATCH_EXPIRED' } });
    expect(api.entryBytes(batch[0]!, model)).toBeGreaterThan(50);
    if (provider === 'openai') {
      // The input, output and error files go; a second discard (redone after a crash) is fine.
      const batchFiles = await fetch(`${sim.url}/v1/batches/${outcome.batchId}`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json()) as Record<string, string | null>;
      const ids = [batchFiles.input_file_id, batchFiles.output_file_id, batchFiles.error_file_id].filter((id): id is string => typeof id === 'string');
      expect(ids).toHaveLength(3);
      const files = async () => (await fetch(`${sim.url}/v1/files`, { headers: { authorization: `Bearer ${KEY}` } }).then((r) => r.json()) as { data: { id: string }[] }).data.map((f) => f.id);
      expect(await files()).toEqual(expect.arrayContaining(ids));
      const discarding: BatchApi = api;
      await discarding.discard!(outcome.batchId);
      await discarding.discard!(outcome.batchId);
      expect((await files()).filter((id) => ids.includes(id))).toEqual([]);
    }
  });

  it('finds the batch of a submission whose answer never came, and never another claim\'s', async () => {
    const api = make();
    const intentAt = Date.now();
    sim.injectBatchFaults({ holdCreateReplyMs: 2_000 });
    const claimId = `lost-${provider}-${intentAt}`;
    let fileId: string | undefined;
    const outcome = await api.submit({ claimId, model, entries: entries(provider, 3, model), timeoutMs: 400, onFileUploaded: async (id) => {
        fileId = id;
      },
    });
    expect(outcome).toMatchObject({ kind: 'uncertain', reason: expect.stringContaining('timed out') });
    const input = { claimId, intentAt, count: 3, knownBatchIds: new Set<string>(), windowMs: 400, ...(fileId ? { fileId } : {}) };
    const found = await api.find(input);
    expect(found).toMatch(provider === 'anthropic' ? /^msgbatch_/ : /^batch_/);
    expect(await api.find({ ...input, claimId: 'another-claim', fileId: 'file-other', knownBatchIds: new Set([found!]) })).toBeUndefined();
  });
});

describe('submission outcomes', () => {
  it('classifies a batch the provider refuses as rejected, with its message', async () => {
    const outcome = await anthropic().submit({ claimId: 'bad', model: CLAUDE, entries: [{ ...entries('anthropic', 1, CLAUDE)[0]!, customId: 'not valid!' }], timeoutMs: 5_000 });
    expect(outcome).toMatchObject({ kind: 'rejected', failure: { code: 'PROVIDER_REJECTED', message: expect.stringMatching(/^400 invalid_request_error: .*custom_id/) } });
  });

  it('classifies a wrong key as rejected without ever showing the key', async () => {
    const wrong = new OpenAIBatchApi({ apiKey: 'sk-wrong-key-abcdef0123456789', baseURL: `${sim.url}/v1`, timeoutMs: 5_000 });
    const outcome = await wrong.submit({ claimId: 'x', model: GPT, entries: entries('openai', 1, GPT), timeoutMs: 5_000 });
    expect(outcome).toMatchObject({ kind: 'rejected', failure: { code: 'PROVIDER_REJECTED', message: expect.stringMatching(/^401 /) } });
    expect(JSON.stringify(outcome)).not.toContain('sk-wrong-key-abcdef0123456789');
  });
});
