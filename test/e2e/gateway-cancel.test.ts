/**
 * Clients that go away: an SDK call aborted mid-stream stops the provider call (the simulator sees
 * its connection closed before the stream's end), the bucket is charged the output produced, and
 * the job ends CANCELLED; a client gone before its call started takes its job with it, and the
 * provider never sees the call. A client that left asking again under its idempotency key gets the
 * job run again, streamed from its start. One that comes back under its key after its job completed
 * and its events expired (kept RELAY_TTL_MS, 5 min, after the last: the tests delete the job's
 * events key instead of waiting) gets the first answer again through the unmodified SDKs' stream
 * helpers, streamed from the job's stored result, with no provider call; it used to be a 400
 * naming the key ("whose stream has expired").
 */
import type Anthropic from '@anthropic-ai/sdk';
import type OpenAI from 'openai';
import { ChatCompletionStream } from 'openai/lib/ChatCompletionStream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '@headroom/producer-sdk';
import { decodeJobEvent, jobEventsKey, laneKeys } from '@headroom/queue';
import { estimateOutputTokens } from '@headroom/queue/token-count';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { GATEWAY_KEYS, GPT, HAIKU, SIM_MODELS, SONNET, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';

let redis: EmbeddedRedis;
let admin: Redis;
let sim: Simulator;
let fleet: GatewayFleet;
let producer: Producer;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
  sim = await startSimulator({ latencyMs: 5, models: SIM_MODELS, outputTokens: { min: 300, max: 300 } });
  fleet = await startGatewayFleet(redis.url, sim, { dispatch: { concurrency: 1 } });
  producer = new Producer({ redis: redis.url, prefix: fleet.prefix });
});
afterAll(async () => {
  await producer?.close();
  await fleet?.close();
  await sim?.close();
  admin?.disconnect();
  await redis?.stop();
});

async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Jobs waiting in a lane: its wait list, then its prioritized set (where a fair lane keeps them). */
async function queuedIn(lane: 'high'): Promise<string[]> {
  const k = laneKeys(fleet.prefix, lane);
  return [...(await admin.lrange(k.wait, 0, -1)), ...(await admin.zrange(k.prioritized, '0', '-1'))];
}

describe('clients that go away', () => {
  it('Anthropic: aborting messages.stream() mid-stream stops the provider call; the job ends CANCELLED, charged the output produced', async () => {
    sim.setPace({ streamTokenMs: 25 });
    try {
      const abort = new AbortController();
      const stream = fleet.anthropic().messages.stream({ model: SONNET, max_tokens: 400, messages: [{ role: 'user', content: 'A long story, please.' }] }, { signal: abort.signal });
      const { response } = await stream.withResponse();
      const jobId = response.headers.get('headroom-job-id')!;
      let deltas = 0;
      stream.on('text', () => {
        if (++deltas === 10) abort.abort();
      });
      await expect(stream.finalMessage()).rejects.toThrow();
      expect(deltas).toBeGreaterThanOrEqual(10);

      const failure = await until('the job to end', async () => (await producer.getJob(jobId))?.failure);
      expect(failure.code).toBe('CANCELLED');
      const admission = await until('the provider call to end', () => sim.stats().admissions.find((a) => a.model === SONNET && a.streamed && a.done));
      expect(admission.clientClosed).toBe(true);
      expect(admission.outputSent).toBeGreaterThanOrEqual(10);
      expect(admission.outputSent).toBeLessThan(300);

      // Charged what was produced: the output counted in the text the worker received, which is
      // at least what it relayed before the cancel, and far below the 400 reserved.
      const charged = Number(/about (\d+) output tokens/.exec(failure.message)?.[1]);
      const relayed = (await admin.xrange(laneKeys(fleet.prefix, 'normal').jobEvents(jobId), '-', '+'))
        .map(([, f]) => decodeJobEvent(f[0]!, f[1]!))
        .filter((e) => e?.kind === 'event')
        .map((e) => JSON.parse((e as { data: string }).data) as { delta?: { text?: string } })
        .map((e) => e.delta?.text ?? '')
        .join('');
      expect(charged).toBeGreaterThanOrEqual(estimateOutputTokens(relayed));
      expect(charged).toBeGreaterThan(0);
      expect(charged).toBeLessThanOrEqual(admission.outputSent + 2);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it('OpenAI: breaking off a streamed create() mid-stream stops the provider call too', async () => {
    sim.setPace({ streamTokenMs: 25 });
    try {
      const abort = new AbortController();
      const before = sim.stats().admissions.length;
      const stream = await fleet.openai().chat.completions.create(
        { model: GPT, max_completion_tokens: 400, stream: true, messages: [{ role: 'user', content: 'A long story, please.' }] },
        { signal: abort.signal },
      );
      let chunks = 0;
      // The OpenAI SDK ends an aborted stream's iteration quietly.
      await (async () => {
        for await (const _ of stream) if (++chunks === 8) abort.abort();
      })().catch(() => undefined);
      expect(chunks).toBeGreaterThanOrEqual(8);
      const admission = await until('the provider call to end', () => sim.stats().admissions.slice(before).find((a) => a.model === GPT && a.done));
      expect(admission).toMatchObject({ streamed: true, clientClosed: true });
      expect(admission.outputSent).toBeLessThan(300);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it('a client that left a stream and asks again under the same headroom-idempotency-key gets the whole answer, streamed afresh', async () => {
    const request = { model: SONNET, max_tokens: 400, messages: [{ role: 'user' as const, content: 'A story I will ask for twice.' }] };
    const headers = { headers: { 'headroom-idempotency-key': 'story-twice' } };
    sim.setPace({ streamTokenMs: 25 });
    let jobId: string;
    try {
      const abort = new AbortController();
      const first = fleet.anthropic().messages.stream(request, { ...headers, signal: abort.signal });
      jobId = (await first.withResponse()).response.headers.get('headroom-job-id')!;
      let deltas = 0;
      first.on('text', () => {
        if (++deltas === 5) abort.abort();
      });
      await expect(first.finalMessage()).rejects.toThrow();
      expect((await until('the job to end', async () => (await producer.getJob(jobId))?.failure)).code).toBe('CANCELLED');
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
    // Before, the repeat was answered with the cancelled job's failure, and the SDK's retries too.
    const again = fleet.anthropic().messages.stream(request, headers);
    expect((await again.withResponse()).response.headers.get('headroom-job-id')).toBe(jobId);
    const message = await again.finalMessage();
    // The whole answer (the simulator writes 300 tokens), from its start: none of the first run's events.
    expect(message.usage.output_tokens).toBe(300);
    expect(message.content[0]).toMatchObject({ type: 'text', text: expect.any(String) });
    // The stream ends on the relay's end entry, written just before the worker completes the job.
    expect(await until('the job to complete', async () => (await producer.getJob(jobId))?.state === 'completed')).toBe(true);
  });

  it('a client gone before its call started takes its job with it: the provider never sees it', async () => {
    sim.setPace({ streamTokenMs: 20 });
    try {
      // The one slot is busy with a slow stream, so the next call waits in its lane.
      const busy = fleet.anthropic().messages.stream({ model: SONNET, max_tokens: 400, messages: [{ role: 'user', content: 'Keep the worker busy.' }] });
      await busy.withResponse();
      const abort = new AbortController();
      const call = fleet.anthropic().messages.create({ model: HAIKU, max_tokens: 16, messages: [{ role: 'user', content: 'never mind' }] }, { signal: abort.signal, headers: { 'headroom-priority': 'high' } });
      const jobId = await until('the call to be queued', async () => (await queuedIn('high'))[0]);
      abort.abort();
      await expect(call).rejects.toThrow();
      await until('the job to be removed', async () => (await producer.getJob(jobId)) === null);
      await busy.finalMessage();
      expect(sim.stats().admissions.some((a) => a.model === HAIKU)).toBe(false);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it("a client leaving a stream it shares (headroom-coalesce) stops only its own: the other gets the whole answer", async () => {
    sim.setPace({ streamTokenMs: 20 });
    try {
      const body = { model: SONNET, max_tokens: 40, messages: [{ role: 'user' as const, content: 'One answer for two clients.' }] };
      const headers = { 'headroom-coalesce': 'true' };
      const before = sim.stats().admissions.length;
      const abort = new AbortController();
      const leaving = fleet.anthropic().messages.stream(body, { signal: abort.signal, headers });
      const { response } = await leaving.withResponse();
      const jobId = response.headers.get('headroom-job-id')!;
      const staying = fleet.anthropic().messages.stream(body, { headers });
      expect((await staying.withResponse()).response.headers.get('headroom-job-id')).toBe(jobId);
      let deltas = 0;
      leaving.on('text', () => {
        if (++deltas === 5) abort.abort();
      });
      await expect(leaving.finalMessage()).rejects.toThrow();
      // Before, the leaving client's cancel stopped the shared call: the other stream ended with
      // CANCELLED after a few words.
      const answer = await staying.finalMessage();
      expect(answer.stop_reason).toBe('max_tokens');
      expect(answer.usage.output_tokens).toBe(40);
      expect(await until('the job to complete', async () => (await producer.getJob(jobId))?.state === 'completed')).toBe(true);
      const calls = sim.stats().admissions.slice(before);
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({ clientClosed: false });
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it('a streamed call whose client leaves before it started is removed as well', async () => {
    sim.setPace({ streamTokenMs: 20 });
    try {
      const busy = fleet.anthropic().messages.stream({ model: SONNET, max_tokens: 400, messages: [{ role: 'user', content: 'Busy again.' }] });
      await busy.withResponse();
      const abort = new AbortController();
      const call = fleet.anthropic(GATEWAY_KEYS.app).messages.create(
        { model: HAIKU, max_tokens: 16, stream: true, messages: [{ role: 'user', content: 'stream, then never mind' }] },
        { signal: abort.signal, headers: { 'headroom-priority': 'high' } },
      );
      const jobId = await until('the call to be queued', async () => (await queuedIn('high'))[0]);
      abort.abort();
      await expect(call).rejects.toThrow();
      await until('the job to be removed', async () => (await producer.getJob(jobId)) === null);
      await busy.finalMessage();
      expect(sim.stats().admissions.some((a) => a.model === HAIKU)).toBe(false);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });
});

/** Expires the job's events now, as RELAY_TTL_MS would: 1 when they were still there to expire. */
const expireEvents = (jobId: string | null) => admin.del(jobEventsKey(fleet.prefix, jobId ?? ''));
const providerCalls = () => sim.stats().admissions.length;

describe('a streamed repeat of an idempotency key whose events expired', () => {
  it('client.messages.stream() gets the first final message, text and usage again', async () => {
    const options = { headers: { 'headroom-idempotency-key': 'replay-messages' } };
    const body = { model: SONNET, max_tokens: 300, messages: [{ role: 'user' as const, content: 'Tell me a short story about a lighthouse.' }] };
    const collect = async () => {
      const stream = fleet.anthropic().messages.stream(body, options);
      const deltas: string[] = [];
      stream.on('text', (delta) => deltas.push(delta));
      const { response } = await stream.withResponse();
      const final: Anthropic.Message = await stream.finalMessage();
      return { jobId: response.headers.get('headroom-job-id'), deltas, final, text: await stream.finalText() };
    };
    const first = await collect();
    expect(first.text.length).toBeGreaterThan(0);
    expect(await expireEvents(first.jobId)).toBe(1);
    const calls = providerCalls();

    const again = await collect();
    expect(again.jobId).toBe(first.jobId);
    expect(again.final).toEqual(first.final);
    expect(again.text).toBe(first.text);
    expect(again.deltas.join('')).toBe(first.text);
    expect(again.final.usage).toEqual(first.final.usage);
    expect(again.final.stop_reason).toBe(first.final.stop_reason);
    expect(providerCalls()).toBe(calls);
  });

  it('chat.completions.create({ stream: true, stream_options: { include_usage: true } }) gets the first text, finish_reason and usage chunk again', async () => {
    const options = { headers: { 'headroom-idempotency-key': 'replay-chat' } };
    const body = { model: GPT, max_completion_tokens: 300, messages: [{ role: 'user' as const, content: 'Tell me a short story about a canal.' }], stream: true as const, stream_options: { include_usage: true } };
    const collect = async () => {
      const { data: stream, response } = await fleet.openai().chat.completions.create(body, options).withResponse();
      let text = '';
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | null | undefined;
      let id: string | undefined;
      for await (const chunk of stream) {
        id = chunk.id;
        for (const choice of chunk.choices) {
          text += choice.delta.content ?? '';
          finish = choice.finish_reason ?? finish;
        }
        if (chunk.usage) usage = chunk.usage;
      }
      return { jobId: response.headers.get('headroom-job-id'), id, text, finish, usage };
    };
    const first = await collect();
    expect(first.text.length).toBeGreaterThan(0);
    expect(first.usage?.completion_tokens).toBeGreaterThan(0);
    expect(await expireEvents(first.jobId)).toBe(1);
    const calls = providerCalls();

    const again = await collect();
    expect(again).toEqual(first);
    expect(providerCalls()).toBe(calls);
  });

  it("ChatCompletionStream's final completion keeps its logprobs in the repeat, as the job's stored result does", async () => {
    const options = { headers: { 'headroom-idempotency-key': 'replay-logprobs' } };
    const body = { model: GPT, max_completion_tokens: 300, logprobs: true, top_logprobs: 2, stream: true as const, messages: [{ role: 'user' as const, content: 'Tell me a short story about a bridge.' }] };
    const collect = async () => {
      const { data: stream, response } = await fleet.openai().chat.completions.create(body, options).withResponse();
      const final = await ChatCompletionStream.fromReadableStream(stream.toReadableStream()).finalChatCompletion();
      return { jobId: response.headers.get('headroom-job-id'), final };
    };
    const first = await collect();
    const logprobs = first.final.choices[0]?.logprobs;
    expect(logprobs?.content?.length).toBeGreaterThan(0);
    expect(logprobs?.content?.[0]?.top_logprobs).toHaveLength(2);
    // What producer.stream(...).result() reads: it used to hold `logprobs: null`.
    const stored = (await producer.getJob(first.jobId!))?.result?.response as OpenAI.ChatCompletion | undefined;
    expect(stored?.choices[0]?.logprobs).toEqual(logprobs);
    expect(await expireEvents(first.jobId)).toBe(1);
    const calls = providerCalls();

    const again = await collect();
    expect(again.jobId).toBe(first.jobId);
    expect(again.final.choices[0]?.logprobs).toEqual(logprobs);
    expect(again.final.choices).toEqual(first.final.choices);
    expect(providerCalls()).toBe(calls);
  });

  it('responses.stream() gets the first Response, text and usage again', async () => {
    const options = { headers: { 'headroom-idempotency-key': 'replay-responses' } };
    const body = { model: GPT, max_output_tokens: 300, input: 'Tell me a short story about a harbour.' };
    // The first call by create({ stream: true }), whose headers name the job; the repeat by the helper.
    const { data: events, response } = await fleet.openai().responses.create({ ...body, stream: true }, options).withResponse();
    let first: OpenAI.Responses.Response | undefined;
    for await (const event of events) if (event.type === 'response.completed') first = event.response;
    expect(first?.output_text ?? first?.output.length).toBeTruthy();
    expect(await expireEvents(response.headers.get('headroom-job-id'))).toBe(1);
    const calls = providerCalls();

    const stream = fleet.openai().responses.stream(body, options);
    const deltas: string[] = [];
    stream.on('response.output_text.delta', (e) => deltas.push(e.delta));
    const again = await stream.finalResponse();
    const { output_text: _text, ...stored } = first!;
    expect(again).toMatchObject(stored);
    expect(again.usage).toEqual(first!.usage);
    expect(deltas.join('')).toBe(again.output_text);
    expect(again.output_text.length).toBeGreaterThan(0);
    expect(providerCalls()).toBe(calls);
  });
});
