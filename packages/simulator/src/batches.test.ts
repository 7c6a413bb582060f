import Anthropic from '@anthropic-ai/sdk';
import OpenAI, { toFile } from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from './index.js';

const CLAUDE = 'claude-haiku-4-5';
const GPT = 'gpt-4o-mini';
const BATCH_MS = 200;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const value = await read();
    if (done(value)) return value;
    await sleep(BATCH_MS / 4);
  }
  throw new Error('batch never finished');
}

let sim: Simulator;

beforeAll(async () => {
  sim = await startSimulator({
    latencyMs: 0,
    outputTokens: 30,
    batchCompletionMs: BATCH_MS,
    models: {
      [CLAUDE]: { provider: 'anthropic', limits: { rpm: 1, itpm: 10_000, otpm: 10_000 } },
      [GPT]: { provider: 'openai', limits: { rpm: 1, tpm: 10_000 } },
    },
  });
});
afterEach(() => sim.reset());
afterAll(() => sim.close());

describe('Anthropic Message Batches through @anthropic-ai/sdk', () => {
  const client = () => new Anthropic({ apiKey: 'sk-batch', baseURL: sim.url, maxRetries: 0 });
  const params = (content: string) => ({ model: CLAUDE, max_tokens: 100, messages: [{ role: 'user' as const, content }] });

  it('runs a batch from in_progress to ended, with results per custom_id and faults where injected', async () => {
    sim.injectBatchFaults({ errored: ['job-2'], expired: ['job-3'] });
    const sdk = client();
    const created = await sdk.messages.batches.create({
      requests: [
        { custom_id: 'job-1', params: params('first') },
        { custom_id: 'job-2', params: params('second') },
        { custom_id: 'job-3', params: params('third') },
        { custom_id: 'job-4', params: { model: CLAUDE, messages: [{ role: 'user', content: 'no max_tokens' }] } as unknown as Anthropic.MessageCreateParamsNonStreaming },
        { custom_id: 'job-5', params: params('fifth') },
      ],
    });
    expect(created).toMatchObject({ type: 'message_batch', processing_status: 'in_progress', results_url: null, ended_at: null });
    expect(created.id).toMatch(/^msgbatch_/);
    expect(created.request_counts).toEqual({ processing: 5, succeeded: 0, errored: 0, canceled: 0, expired: 0 });
    expect(Date.parse(created.expires_at) - Date.parse(created.created_at)).toBe(24 * 3600_000);

    // Batches have their own pool: RPM 1 is not touched by five batch requests.
    await sdk.messages.create(params('interactive'));

    const ended = await until(() => sdk.messages.batches.retrieve(created.id), (b) => b.processing_status === 'ended');
    expect(ended.request_counts).toEqual({ processing: 0, succeeded: 2, errored: 2, canceled: 0, expired: 1 });
    expect(ended.results_url).toBe(`${sim.url}/v1/messages/batches/${created.id}/results`);
    expect(ended.ended_at).not.toBeNull();

    const results = new Map<string, Anthropic.Messages.MessageBatchResult>();
    for await (const entry of await sdk.messages.batches.results(created.id)) results.set(entry.custom_id, entry.result);
    expect(results.size).toBe(5);
    const first = results.get('job-1');
    expect(first?.type).toBe('succeeded');
    if (first?.type === 'succeeded') {
      expect(first.message.usage.output_tokens).toBe(30);
      // Same request, same answer, batch or not.
      const direct = await new Anthropic({ apiKey: 'other-key', baseURL: sim.url, maxRetries: 0 }).messages.create(params('first'));
      expect(first.message.content).toEqual(direct.content);
    }
    expect(results.get('job-2')).toEqual({ type: 'errored', error: { type: 'error', error: { type: 'api_error', message: 'Internal server error' } } });
    expect(results.get('job-3')).toEqual({ type: 'expired' });
    const invalid = results.get('job-4');
    expect(invalid?.type === 'errored' && invalid.error.error).toEqual({ type: 'invalid_request_error', message: 'max_tokens: Field required' });

    expect(sim.stats().batches.anthropic).toMatchObject({ created: 1, requests: 5, succeeded: 2, errored: 2, expired: 1 });
    expect(sim.stats().models[CLAUDE]?.admitted).toBe(2); // the two interactive calls above, nothing from the batch
  });

  it('cuts a garbled entry\'s result line in half, leaving the other lines whole', async () => {
    sim.injectBatchFaults({ garbled: ['job-2'] });
    const sdk = client();
    const created = await sdk.messages.batches.create({ requests: ['job-1', 'job-2', 'job-3'].map((custom_id) => ({ custom_id, params: params(custom_id) })) });
    await until(() => sdk.messages.batches.retrieve(created.id), (b) => b.processing_status === 'ended');
    const res = await fetch(`${sim.url}/v1/messages/batches/${created.id}/results`, { headers: { 'x-api-key': 'sk-batch', 'anthropic-version': '2023-06-01' } });
    const lines = (await res.text()).trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[0]!)).toMatchObject({ custom_id: 'job-1', result: { type: 'succeeded' } });
    expect(() => JSON.parse(lines[1]!)).toThrow(SyntaxError);
    expect(lines[1]).toMatch(/^\{"custom_id":"job-2"/);
    expect(JSON.parse(lines[2]!)).toMatchObject({ custom_id: 'job-3', result: { type: 'succeeded' } });
  });

  it('refuses a malformed batch at creation', async () => {
    const error = await client()
      .messages.batches.create({ requests: [{ custom_id: 'bad id!', params: params('x') }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.BadRequestError);
    expect((error as Error).message).toContain('custom_id');
  });

  it('cancels a batch: canceling, then ended with its requests canceled', async () => {
    const sdk = client();
    const batch = await sdk.messages.batches.create({ requests: [{ custom_id: 'a', params: params('a') }, { custom_id: 'b', params: params('b') }] });
    const canceling = await sdk.messages.batches.cancel(batch.id);
    expect(canceling.processing_status).toBe('canceling');
    expect(canceling.cancel_initiated_at).not.toBeNull();
    const ended = await until(() => sdk.messages.batches.retrieve(batch.id), (b) => b.processing_status === 'ended');
    expect(ended.request_counts.canceled).toBe(2);
  });

  it('lists batches newest first through the SDK pagination', async () => {
    const sdk = new Anthropic({ apiKey: 'sk-list', baseURL: sim.url, maxRetries: 0 });
    const ids: string[] = [];
    for (const name of ['x', 'y', 'z']) ids.push((await sdk.messages.batches.create({ requests: [{ custom_id: name, params: params(name) }] })).id);
    const firstPage = await sdk.messages.batches.list({ limit: 2 });
    expect(firstPage.data.map((b) => b.id)).toEqual([ids[2], ids[1]]);
    expect(firstPage.has_more).toBe(true);
    const all: string[] = [];
    for await (const batch of sdk.messages.batches.list({ limit: 2 })) all.push(batch.id);
    expect(all).toEqual([...ids].reverse());
  });
});

describe('crash drills', () => {
  it('holds a batch create reply while the batch already exists, and counts batches per model', async () => {
    sim.injectBatchFaults({ holdCreateReplyMs: 300 });
    const sdk = new Anthropic({ apiKey: 'sk-hold', baseURL: sim.url, maxRetries: 0 });
    const started = Date.now();
    const pending = sdk.messages.batches.create({ requests: [{ custom_id: 'a', params: { model: CLAUDE, max_tokens: 10, messages: [{ role: 'user', content: 'a' }] } }] });
    await sleep(100);
    // The provider has the batch; the client has not heard yet.
    expect(sim.stats().batches.anthropic.created).toBe(1);
    expect((await sdk.messages.batches.list()).data).toHaveLength(1);
    const created = await pending;
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(created.id).toMatch(/^msgbatch_/);
    expect(sim.stats().batchesByModel).toEqual({ [CLAUDE]: 1 });
  });
});

describe('OpenAI Files + Batch through the openai SDK', () => {
  const client = () => new OpenAI({ apiKey: 'sk-batch', baseURL: `${sim.url}/v1`, maxRetries: 0 });
  const line = (custom_id: string, body: Record<string, unknown>) => JSON.stringify({ custom_id, method: 'POST', url: '/v1/chat/completions', body });
  const ask = (content: string) => ({ model: GPT, max_tokens: 100, messages: [{ role: 'user', content }] });

  it('uploads a JSONL file, runs the batch through its statuses, and writes output and error files', async () => {
    sim.injectBatchFaults({ errored: ['r2'] });
    const sdk = client();
    const jsonl = [line('r1', ask('one')), line('r2', ask('two')), line('r3', ask('three')), line('r4', { model: GPT, messages: [] })].join('\n');
    const file = await sdk.files.create({ file: await toFile(Buffer.from(jsonl), 'requests.jsonl'), purpose: 'batch' });
    expect(file).toMatchObject({ object: 'file', purpose: 'batch', filename: 'requests.jsonl', bytes: Buffer.byteLength(jsonl) });
    expect(await (await sdk.files.content(file.id)).text()).toBe(jsonl);

    const batch = await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    expect(batch).toMatchObject({ object: 'batch', status: 'validating', input_file_id: file.id, completion_window: '24h' });
    await sdk.chat.completions.create({ model: GPT, max_tokens: 10, messages: [{ role: 'user', content: 'interactive' }] });

    const done = await until(() => sdk.batches.retrieve(batch.id), (b) => b.status === 'completed');
    expect(done.request_counts).toEqual({ total: 4, completed: 2, failed: 2 });
    expect(done.output_file_id).toBeTruthy();
    expect(done.error_file_id).toBeTruthy();
    expect(done.completed_at).toBeGreaterThanOrEqual(done.created_at);

    const output = (await (await sdk.files.content(done.output_file_id as string)).text()).trim().split('\n').map((l) => JSON.parse(l));
    expect(output).toHaveLength(2);
    for (const entry of output) {
      expect(entry.response.status_code).toBe(200);
      expect(entry.response.body).toMatchObject({ object: 'chat.completion', model: GPT, usage: { completion_tokens: 30 } });
      expect(entry.error).toBeNull();
    }
    const errors = (await (await sdk.files.content(done.error_file_id as string)).text()).trim().split('\n').map((l) => JSON.parse(l));
    const byId = new Map(errors.map((e) => [e.custom_id, e.response]));
    expect(byId.get('r4')).toMatchObject({ status_code: 400, body: { error: { code: 'empty_array' } } });
    expect(byId.get('r2')).toMatchObject({ status_code: 500, body: { error: { type: 'server_error' } } });

    expect(sim.stats().batches.openai).toMatchObject({ created: 1, requests: 4, succeeded: 2, errored: 2 });
  });

  it('fails a batch whose file mixes models or targets another endpoint, listing the errors', async () => {
    const sdk = client();
    const jsonl = [line('a', ask('a')), line('b', { ...ask('b'), model: 'gpt-4.1' }), JSON.stringify({ custom_id: 'c', method: 'POST', url: '/v1/embeddings', body: ask('c') })].join('\n');
    const file = await sdk.files.create({ file: await toFile(Buffer.from(jsonl), 'mixed.jsonl'), purpose: 'batch' });
    const batch = await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const failed = await until(() => sdk.batches.retrieve(batch.id), (b) => b.status === 'failed');
    expect(failed.errors?.data?.map((e) => [e.code, e.line])).toEqual([
      ['mismatched_model', 2],
      ['invalid_url', 3],
    ]);
  });

  it('marks expired entries and the batch expired, and refuses unknown files', async () => {
    sim.injectBatchFaults({ expired: ['late'] });
    const sdk = client();
    const file = await sdk.files.create({ file: await toFile(Buffer.from([line('ok', ask('ok')), line('late', ask('late'))].join('\n')), 'e.jsonl'), purpose: 'batch' });
    const batch = await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const expired = await until(() => sdk.batches.retrieve(batch.id), (b) => b.status === 'expired');
    expect(expired.request_counts).toEqual({ total: 2, completed: 1, failed: 1 });
    const errorLine = JSON.parse((await (await sdk.files.content(expired.error_file_id as string)).text()).trim());
    expect(errorLine).toMatchObject({ custom_id: 'late', response: null, error: { code: 'batch_expired' } });

    const missing = await sdk.batches
      .create({ input_file_id: 'file-nope', endpoint: '/v1/chat/completions', completion_window: '24h' })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('runs a /v1/responses batch: each line answered with the Response the interactive call gives, as batch tier', async () => {
    const sdk = client();
    const respond = (custom_id: string, body: Record<string, unknown>) => JSON.stringify({ custom_id, method: 'POST', url: '/v1/responses', body });
    const first = { model: GPT, max_output_tokens: 100, instructions: 'Be brief.', input: 'Tell me about lanes.' };
    const second = { model: GPT, max_output_tokens: 100, input: [{ role: 'user', content: [{ type: 'input_text', text: 'And buckets?' }] }] };
    const jsonl = [
      respond('q1', first),
      respond('q2', second),
      respond('q3', { model: GPT, input: '' }),
      respond('q4', { ...first, stream: true }),
    ].join('\n');
    const file = await sdk.files.create({ file: await toFile(Buffer.from(jsonl), 'responses.jsonl'), purpose: 'batch' });
    const batch = await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/responses', completion_window: '24h' });
    expect(batch.endpoint).toBe('/v1/responses');

    const done = await until(() => sdk.batches.retrieve(batch.id), (b) => b.status === 'completed');
    expect(done.endpoint).toBe('/v1/responses');
    expect(done.request_counts).toEqual({ total: 4, completed: 2, failed: 2 });

    const output = (await (await sdk.files.content(done.output_file_id as string)).text()).trim().split('\n').map((l) => JSON.parse(l));
    const bodies = new Map<string, OpenAI.Responses.Response>(output.map((e) => [e.custom_id, e.response.body]));
    // Separate keys: each direct call gets a fresh 1-RPM pool.
    for (const [i, [id, body]] of [['q1', first], ['q2', second]].entries()) {
      const batched = bodies.get(id as string);
      const direct = await new OpenAI({ apiKey: `sk-direct-${i}`, baseURL: `${sim.url}/v1`, maxRetries: 0 }).responses.create(body as OpenAI.Responses.ResponseCreateParamsNonStreaming);
      expect(batched).toMatchObject({ object: 'response', status: 'completed', model: GPT, service_tier: 'batch' });
      expect(batched?.id).toMatch(/^resp_/);
      expect(batched?.completed_at).toBeGreaterThanOrEqual(batched?.created_at ?? Infinity);
      const text = batched?.output[0]?.type === 'message' && batched.output[0].content[0]?.type === 'output_text' ? batched.output[0].content[0].text : undefined;
      expect(text).toBe(direct.output_text);
      expect(batched?.usage).toEqual(direct.usage);
    }
    const usage = [...bodies.values()].map((b) => b.usage);
    expect(done.usage).toMatchObject({
      input_tokens: usage.reduce((sum, u) => sum + (u?.input_tokens ?? 0), 0),
      output_tokens: usage.reduce((sum, u) => sum + (u?.output_tokens ?? 0), 0),
    });

    const errors = (await (await sdk.files.content(done.error_file_id as string)).text()).trim().split('\n').map((l) => JSON.parse(l));
    const byId = new Map(errors.map((e) => [e.custom_id, e.response]));
    expect(byId.get('q3')).toMatchObject({ status_code: 400, body: { error: { param: 'input', code: 'empty_string' } } });
    expect(byId.get('q4')).toMatchObject({ status_code: 400, body: { error: { param: 'stream' } } });
  });

  it('answers a /v1/responses line naming an unknown model with a 404 line', async () => {
    const sdk = client();
    const jsonl = JSON.stringify({ custom_id: 'u', method: 'POST', url: '/v1/responses', body: { model: 'gpt-nope', input: 'hi' } });
    const file = await sdk.files.create({ file: await toFile(Buffer.from(jsonl), 'unknown.jsonl'), purpose: 'batch' });
    const batch = await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/responses', completion_window: '24h' });
    const done = await until(() => sdk.batches.retrieve(batch.id), (b) => b.status === 'completed');
    const errorLine = JSON.parse((await (await sdk.files.content(done.error_file_id as string)).text()).trim());
    expect(errorLine.response).toMatchObject({ status_code: 404, body: { error: { code: 'model_not_found' } } });
  });

  it('fails a /v1/responses batch whose line targets /v1/chat/completions', async () => {
    const sdk = client();
    const jsonl = [JSON.stringify({ custom_id: 'r', method: 'POST', url: '/v1/responses', body: { model: GPT, input: 'r' } }), line('c', ask('c'))].join('\n');
    const file = await sdk.files.create({ file: await toFile(Buffer.from(jsonl), 'wrong-url.jsonl'), purpose: 'batch' });
    const batch = await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/responses', completion_window: '24h' });
    const failed = await until(() => sdk.batches.retrieve(batch.id), (b) => b.status === 'failed');
    expect(failed.errors?.data?.map((e) => [e.code, e.line, e.param])).toEqual([['invalid_url', 2, 'url']]);
  });

  it('refuses a batch for an endpoint it does not serve, naming both it does', async () => {
    const sdk = client();
    const file = await sdk.files.create({ file: await toFile(Buffer.from(line('x', ask('x'))), 'x.jsonl'), purpose: 'batch' });
    const error = await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/embeddings', completion_window: '24h' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error).toMatchObject({ status: 400, param: 'endpoint', code: 'invalid_value' });
    expect((error as Error).message).toContain("'/v1/chat/completions' and '/v1/responses'");
  });

  it('cancels a batch and lists batches through the SDK pagination', async () => {
    const sdk = new OpenAI({ apiKey: 'sk-list', baseURL: `${sim.url}/v1`, maxRetries: 0 });
    const file = await sdk.files.create({ file: await toFile(Buffer.from(line('x', ask('x'))), 'x.jsonl'), purpose: 'batch' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await sdk.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' })).id);
    const cancelling = await sdk.batches.cancel(ids[0] as string);
    expect(cancelling.status).toBe('cancelling');
    await until(() => sdk.batches.retrieve(ids[0] as string), (b) => b.status === 'cancelled');
    const listed: string[] = [];
    for await (const batch of sdk.batches.list({ limit: 2 })) listed.push(batch.id);
    expect(listed).toEqual([...ids].reverse());
  });
});
