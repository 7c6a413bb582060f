/**
 * Both adapters' streamed calls against the simulator: the events relayed as the provider sent
 * them, the message assembled from them equal to the plain call's answer, and how a stream that
 * fails or is stopped part-way reports what it had produced.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Simulator, startSimulator } from '@headroom/simulator';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Reservation } from '@headroom/queue';
import { producedSoFar } from '../run/stream-call.js';
import { AnthropicAdapter } from './anthropic.js';
import { OpenAIStreamAccumulator } from './openai-stream.js';
import { OpenAIResponsesAccumulator } from './openai-responses.js';
import { OpenAIAdapter } from './openai.js';
import type { ProviderRequest, ProviderStreamResult } from './types.js';

const KEY = 'sk-stream-test-0123456789abcdef';
const SONNET = 'claude-sonnet-4-6';
const GPT = 'gpt-4.1';

let sim: Simulator;
let anthropic: AnthropicAdapter;
let openai: OpenAIAdapter;

beforeAll(async () => {
  sim = await startSimulator({ latencyMs: 0, apiKeys: [KEY] });
  anthropic = new AnthropicAdapter({ apiKey: KEY, baseURL: sim.url, timeoutMs: 10_000 });
  openai = new OpenAIAdapter({ apiKey: KEY, baseURL: `${sim.url}/v1`, timeoutMs: 10_000 });
});
afterEach(() => {
  sim.clearFaults();
  sim.setPace({ streamTokenMs: null });
});
afterAll(async () => {
  await sim.close();
});

const claude = (content: string, extra: Record<string, unknown> = {}) =>
  ({ model: SONNET, max_tokens: 200, messages: [{ role: 'user', content }], ...extra }) as ProviderRequest;
const gpt = (content: string, extra: Record<string, unknown> = {}) =>
  ({ model: GPT, max_completion_tokens: 200, messages: [{ role: 'user', content }], ...extra }) as ProviderRequest;

const ask = (input: string, extra: Record<string, unknown> = {}) => ({ model: GPT, max_output_tokens: 1000, input, ...extra }) as ProviderRequest;

async function collect(call: (onEvent: (data: string, output: boolean) => void) => Promise<ProviderStreamResult>) {
  const events: Record<string, unknown>[] = [];
  /** Per event, whether it added to the answer's output. */
  const output: boolean[] = [];
  const result = await call((data, added) => {
    events.push(JSON.parse(data) as Record<string, unknown>);
    output.push(added);
  });
  return { events, output, result };
}

describe('streamed calls', () => {
  it('Anthropic: keeps the 1-hour cache writes apart in the usage, and in what a cut stream is charged from (message_start)', async () => {
    const system = [{ type: 'text', text: 'Kept for an hour, streamed. '.repeat(300), cache_control: { type: 'ephemeral', ttl: '1h' } }];
    const { result } = await collect((onEvent) => anthropic.stream({ model: SONNET, request: claude('Cached for long', { system }), onEvent }));
    if (!result.ok) throw new Error('expected the stream to succeed');
    expect(result.usage.cacheCreation1hInputTokens).toBeGreaterThan(1000);
    expect(result.usage.cacheCreation1hInputTokens).toBe(result.usage.cacheCreationInputTokens);
    expect(result.progress.inputUsage?.cacheCreation1hInputTokens).toBe(result.usage.cacheCreation1hInputTokens);
  });

  it('Anthropic: relays each event and assembles the same message the plain call answers', async () => {
    const plain = await anthropic.call({ model: SONNET, request: claude('Tell me about queues') });
    let head: Headers | undefined;
    const { events, result } = await collect((onEvent) =>
      anthropic.stream({
        model: SONNET,
        request: claude('Tell me about queues'),
        onEvent,
        onOpen: (_id, headers) => {
          head = headers;
        },
      }),
    );
    if (!plain.ok || !result.ok) throw new Error('expected both calls to succeed');
    expect(events[0]?.type).toBe('message_start');
    expect(events.at(-1)?.type).toBe('message_stop');
    const text = events.filter((e) => e.type === 'content_block_delta').map((e) => (e.delta as { text: string }).text).join('');
    const plainText = (plain.response as { content: { text: string }[] }).content[0]!.text;
    expect(text).toBe(plainText);
    expect((result.response as { content: { text: string }[] }).content[0]!.text).toBe(plainText);
    expect(result.usage).toEqual(plain.usage);
    expect(result.progress.events).toBe(events.length);
    // The rate-limit headers come with the head; the result, read at the end, carries none, since
    // by then they no longer say what the provider holds.
    expect(head?.get('anthropic-ratelimit-requests-limit')).toBe('1000');
    expect(result.headers).toBeUndefined();
  });

  it('marks the events that add to the output: the first token is the first such event', async () => {
    const a = await collect((onEvent) => anthropic.stream({ model: SONNET, request: claude('Which event holds the first token?'), onEvent }));
    // Anthropic: every text delta adds output; message_start, the block's start and stop, and the
    // message's delta and stop do not.
    expect(a.output).toEqual(a.events.map((e) => e.type === 'content_block_delta' && (e.delta as { text: string }).text !== ''));
    expect(a.events[a.output.indexOf(true)]?.type).toBe('content_block_delta');
    expect(a.output.indexOf(true)).toBeGreaterThan(0);
    const o = await collect((onEvent) => openai.stream({ model: GPT, request: gpt('Which chunk holds the first token?', { stream: true }), onEvent }));
    const content = (e: Record<string, unknown>) => ((e.choices as { delta: { content?: string | null } }[])[0]?.delta.content ?? '') !== '';
    expect(o.output).toEqual(o.events.map(content));
    expect(o.output).toContain(true);
  });

  it('OpenAI: hides the usage it asked for from a client that did not ask, and settles from it', async () => {
    const plain = await openai.call({ model: GPT, request: gpt('Tell me about lanes') });
    const { events, result } = await collect((onEvent) => openai.stream({ model: GPT, request: gpt('Tell me about lanes', { stream: true }), onEvent }));
    if (!plain.ok || !result.ok) throw new Error('expected both calls to succeed');
    expect(events.every((e) => !('usage' in e))).toBe(true);
    expect(events.every((e) => Array.isArray(e.choices) && e.choices.length > 0)).toBe(true);
    expect(result.usage).toEqual(plain.usage);
    const plainText = (plain.response as { choices: { message: { content: string } }[] }).choices[0]!.message.content;
    expect((result.response as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(plainText);
  });

  it('OpenAI: passes the usage chunk through to a client that asked for it', async () => {
    const { events, result } = await collect((onEvent) =>
      openai.stream({ model: GPT, request: gpt('Usage please', { stream: true, stream_options: { include_usage: true } }), onEvent }),
    );
    if (!result.ok) throw new Error('expected success');
    expect(events.slice(0, -1).every((e) => e.usage === null)).toBe(true);
    expect(events.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: result.usage.outputTokens } });
  });

  it('OpenAI Responses: relays each event as sent and takes the Response and usage from its terminal event', async () => {
    const plain = await openai.call({ model: GPT, request: ask('Tell me about harbours'), api: 'responses' });
    const { events, output, result } = await collect((onEvent) => openai.stream({ model: GPT, request: ask('Tell me about harbours', { stream: true }), api: 'responses', onEvent }));
    if (!plain.ok || !result.ok) throw new Error('expected both calls to succeed');
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events[0]?.type).toBe('response.created');
    expect(events.at(-1)?.type).toBe('response.completed');
    // Only the text deltas add to the output (the first token is the first delta).
    expect(output.indexOf(true)).toBe(events.findIndex((e) => e.type === 'response.output_text.delta'));
    expect(result.usage).toEqual(plain.usage);
    expect(result.usage.outputTokens).toBeGreaterThan(0);
    const text = (r: unknown) => ((r as { output: { content: { text: string }[] }[] }).output[0]!.content[0]!.text);
    expect(text(result.response)).toBe(text(plain.response));
    expect(result.progress.outputText).toBe(text(plain.response));
    // A clipped answer is an answer: the incomplete Response, settled from its usage.
    const clipped = await collect((onEvent) => openai.stream({ model: GPT, request: ask('Tell me about harbours', { stream: true, max_output_tokens: 16 }), api: 'responses', onEvent }));
    if (!clipped.result.ok) throw new Error('expected the clipped stream to succeed');
    expect(clipped.events.at(-1)?.type).toBe('response.incomplete');
    expect(clipped.result.usage.outputTokens).toBe(16);
  });

  it('fails before the first event like a plain call (nothing relayed, so it may be retried)', async () => {
    sim.injectFaults({ model: SONNET, status: 529, count: 1 });
    const { events, result } = await collect((onEvent) => anthropic.stream({ model: SONNET, request: claude('Busy?'), onEvent }));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result).toMatchObject({ kind: 'overloaded', status: 529 });
    expect(result.progress.events).toBe(0);
    expect(events).toEqual([]);
  });

  it("classifies an overload sent in the stream, after the opening events, as an overload (retried like a 529), in each provider's shape", async () => {
    sim.injectFaults([{ model: SONNET, overloaded: true, midCall: true, count: 1 }, { model: GPT, overloaded: true, midCall: true, count: 2 }]);
    const a = await collect((onEvent) => anthropic.stream({ model: SONNET, request: claude('Busy?'), onEvent }));
    const o = await collect((onEvent) => openai.stream({ model: GPT, request: gpt('Busy?', { stream: true }), onEvent }));
    const r = await collect((onEvent) => openai.stream({ model: GPT, request: ask('Busy?', { stream: true }), api: 'responses', onEvent }));
    // Anthropic's in-band overloaded_error is its 529; OpenAI's server_is_overloaded its 503. The
    // call has no status: its head said 200 and it never ended.
    expect(a.result).toMatchObject({ ok: false, kind: 'overloaded', status: null, message: 'overloaded_error in the stream: Overloaded' });
    expect(o.result).toMatchObject({ ok: false, kind: 'server', status: null, message: expect.stringContaining('server_is_overloaded in the stream') });
    expect(r.result).toMatchObject({ ok: false, kind: 'server', status: null, message: expect.stringContaining('server_is_overloaded in the stream') });
    // The opening events came before the error; none carried output.
    expect(a.events.map((e) => e.type)).toEqual(['message_start', 'content_block_start']);
    expect(r.events.map((e) => e.type)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    for (const { output } of [a, o, r]) expect(output.every((added) => !added)).toBe(true);
  });

  it('ends a stream cut after its first event with an error event in each provider shape', async () => {
    // Paced, so the first half of the answer reaches the client before the line drops.
    sim.setPace({ streamTokenMs: 2 });
    sim.injectFaults([{ model: SONNET, cut: true, count: 1 }, { model: GPT, cut: true, count: 1 }]);
    const a = await collect((onEvent) => anthropic.stream({ model: SONNET, request: claude('A long answer please, with many words in it'), onEvent }));
    const o = await collect((onEvent) => openai.stream({ model: GPT, request: gpt('A long answer please, with many words in it', { stream: true }), onEvent }));
    for (const { events, result } of [a, o]) {
      if (result.ok) throw new Error('expected the cut to fail the stream');
      expect(result.kind).toBe('network');
      expect(result.progress.events).toBe(events.length);
      expect(result.progress.events).toBeGreaterThan(0);
      expect(result.progress.outputText.length).toBeGreaterThan(0);
    }
    expect(JSON.parse((a.result as { errorEvent: string }).errorEvent)).toMatchObject({ type: 'error', error: { type: 'api_error' } });
    expect(JSON.parse((o.result as { errorEvent: string }).errorEvent)).toMatchObject({ error: { type: 'server_error' } });
    // The Responses API's own error event, numbered after the last event relayed.
    sim.injectFaults({ model: GPT, cut: true, count: 1 });
    const r = await collect((onEvent) => openai.stream({ model: GPT, request: ask('A long answer please, with many words in it', { stream: true }), api: 'responses', onEvent }));
    if (r.result.ok) throw new Error('expected the cut to fail the Responses stream');
    expect(r.result.kind).toBe('network');
    expect(r.result.progress.outputText.length).toBeGreaterThan(0);
    expect(JSON.parse(r.result.errorEvent)).toEqual({ type: 'error', code: 'server_error', message: expect.any(String), param: null, sequence_number: r.events.length });
    // Anthropic reported the input up front; OpenAI reports nothing before the end.
    expect((a.result as { progress: { inputUsage?: unknown } }).progress.inputUsage).toMatchObject({ inputTokens: expect.any(Number) });
  });

  it("a stream its whole life's bound (streamTimeoutMs) cuts mid-way fails as a timeout, in each provider's shape, not as the provider's own short stream", async () => {
    // The SDKs end a stream's iteration quietly on an abort: this read as `200 the stream ended
    // before its message_stop event`, a bad body the throttle counted as served.
    sim.setPace({ streamTokenMs: 50 });
    const slow = { timeoutMs: 400, streamTimeoutMs: 400 };
    const a = await collect((onEvent) => new AnthropicAdapter({ apiKey: KEY, baseURL: sim.url, ...slow }).stream({ model: SONNET, request: claude('A long answer please'), onEvent }));
    const o = await collect((onEvent) => new OpenAIAdapter({ apiKey: KEY, baseURL: `${sim.url}/v1`, ...slow }).stream({ model: GPT, request: gpt('A long answer please', { stream: true }), onEvent }));
    for (const [provider, { events, result }] of [['anthropic', a], ['openai', o]] as const) {
      if (result.ok) throw new Error('expected the deadline to cut the stream');
      expect(result).toMatchObject({ kind: 'network', status: null, message: `stream timed out after 400 ms (providers.${provider}.streamTimeoutMs)` });
      expect(result.progress.events).toBe(events.length);
      expect(result.progress.events).toBeGreaterThan(0);
    }
    expect(JSON.parse((a.result as { errorEvent: string }).errorEvent)).toEqual({ type: 'error', error: { type: 'api_error', message: 'stream timed out after 400 ms (providers.anthropic.streamTimeoutMs)' } });
    expect(JSON.parse((o.result as { errorEvent: string }).errorEvent)).toMatchObject({ error: { type: 'server_error', message: 'stream timed out after 400 ms (providers.openai.streamTimeoutMs)' } });
  });

  it('cuts a stream the provider stalls half-way (connection open, silent) at streamIdleMs, not at the call timeout: a timeout saying how long the provider was silent, in each provider\'s shape', async () => {
    // The call timeout (10 s here, 600 s by default) used to be all that ended a stalled stream.
    sim.injectFaults({ stall: true, count: 2 });
    const idle = { timeoutMs: 10_000, streamIdleMs: 300 };
    const a = await collect((onEvent) => new AnthropicAdapter({ apiKey: KEY, baseURL: sim.url, ...idle }).stream({ model: SONNET, request: claude('A stream that stalls'), onEvent }));
    const o = await collect((onEvent) => new OpenAIAdapter({ apiKey: KEY, baseURL: `${sim.url}/v1`, ...idle }).stream({ model: GPT, request: gpt('A stream that stalls', { stream: true }), onEvent }));
    for (const [provider, { events, result }] of [['anthropic', a], ['openai', o]] as const) {
      if (result.ok) throw new Error('expected the idle timeout to cut the stream');
      const message = `the provider sent nothing for 300 ms (stream idle timeout, providers.${provider}.streamIdleMs)`;
      expect(result).toMatchObject({ kind: 'network', status: null, message });
      expect(result.progress.events).toBe(events.length);
      expect(result.progress.events).toBeGreaterThan(0);
    }
    expect(JSON.parse((a.result as { errorEvent: string }).errorEvent)).toEqual({ type: 'error', error: { type: 'api_error', message: 'the provider sent nothing for 300 ms (stream idle timeout, providers.anthropic.streamIdleMs)' } });
    expect(JSON.parse((o.result as { errorEvent: string }).errorEvent)).toMatchObject({ error: { type: 'server_error', message: 'the provider sent nothing for 300 ms (stream idle timeout, providers.openai.streamIdleMs)' } });
    expect(sim.stats().models[SONNET]?.faultsInjected.stall).toBe(1);
    expect(sim.stats().models[GPT]?.faultsInjected.stall).toBe(1);
  });

  it('lets a slow but steady stream run past streamIdleMs and past the call timeout: events come more often than the idle bound, and a stream has its own whole-life bound', async () => {
    // 100 ms a token, 1.5 s of silence allowed (a busy machine's scheduling stays well inside it):
    // the whole answer (20 tokens) takes longer than both bounds. Before, `timeoutMs` bounded a
    // stream's whole life and cut it part-way.
    sim.setPace({ streamTokenMs: 100 });
    const steady = { timeoutMs: 1_500, streamIdleMs: 1_500, streamTimeoutMs: 60_000 };
    const a = await collect((onEvent) => new AnthropicAdapter({ apiKey: KEY, baseURL: sim.url, ...steady }).stream({ model: SONNET, request: claude('A slow steady answer', { max_tokens: 20 }), onEvent }));
    const o = await collect((onEvent) => new OpenAIAdapter({ apiKey: KEY, baseURL: `${sim.url}/v1`, ...steady }).stream({ model: GPT, request: gpt('A slow steady answer', { stream: true, max_completion_tokens: 20 }), onEvent }));
    for (const { events, result } of [a, o]) {
      expect(result.ok, JSON.stringify(result)).toBe(true);
      expect(result.progress.events).toBe(events.length);
    }
    expect((a.result as { usage: { outputTokens: number } }).usage.outputTokens).toBe(20);
    expect((o.result as { usage: { outputTokens: number } }).usage.outputTokens).toBe(20);
  });

  it("counts Anthropic's pings as the provider's sign of life: a stream silent but for pings for longer than streamIdleMs is not cut", async () => {
    // Both SDKs drop `ping` events before the worker sees them: the idle clock reads the bytes.
    // After the first output, 12 pings 150 ms apart: 1.8 s with no event the SDK hands on,
    // against an idle bound of 1 s (the pings' gaps well inside it, on a busy machine too).
    const pings = Array.from({ length: 12 }, () => [150, sse('ping', {})]).flat();
    const result = await scriptedAnthropicStream([...opening, delta('Hi'), ...pings, delta(' there'), ...closing], { timeoutMs: 10_000, streamIdleMs: 1_000 });
    expect(result.ok, JSON.stringify(result)).toBe(true);
    expect((result as { response: { content: unknown } }).response.content).toEqual([{ type: 'text', text: 'Hi there' }]);
  });

  it('does not count silence before the first output against streamIdleMs: a model thinking before its first token is bounded by timeoutMs, as a plain call', async () => {
    // OpenAI's reasoning models send nothing while they think (Chat Completions), or their opening
    // events and then nothing (Responses): 800 ms of it here, against an idle bound of 300 ms.
    const result = await scriptedAnthropicStream([...opening, 800, delta('Thought'), ...closing], { timeoutMs: 10_000, streamIdleMs: 300 });
    expect(result.ok, JSON.stringify(result)).toBe(true);
    // ... and `timeoutMs` still bounds it: the first output's wait is a plain call's.
    const late = await scriptedAnthropicStream([...opening, 800, delta('Thought'), ...closing], { timeoutMs: 300, streamIdleMs: 200 });
    expect(late).toMatchObject({ ok: false, kind: 'network', message: 'request timed out after 300 ms', progress: { events: 2 } });
  });

  it("prints nothing of a stream event that is not JSON outside the worker's logs: the SDKs' own logging is off", async () => {
    // A proxy that breaks an event echoing the key: the SDKs printed its raw text to stderr
    // (`Could not parse message into JSON: ...`), before any redaction, outside the JSON log lines.
    const broken = (path: string) =>
      path.includes('chat/completions')
        ? `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"${GPT}","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\ndata: {"choices":[{"delta":{"content":"${KEY}\n\n`
        : `event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"${SONNET}","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":1}}}\n\nevent: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"${KEY}\n\n`;
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/event-stream' }).end(broken(req.url ?? '')));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const printed = ['error', 'warn', 'info', 'log', 'debug'].map((level) => vi.spyOn(console, level as 'error').mockImplementation(() => {}));
    try {
      const a = await new AnthropicAdapter({ apiKey: KEY, baseURL: url, timeoutMs: 5_000 }).stream({ model: SONNET, request: claude('Broken?'), onEvent: () => {} });
      const o = await new OpenAIAdapter({ apiKey: KEY, baseURL: `${url}/v1`, timeoutMs: 5_000 }).stream({ model: GPT, request: gpt('Broken?', { stream: true }), onEvent: () => {} });
      for (const result of [a, o]) expect(result).toMatchObject({ ok: false, kind: 'bad_response' });
      for (const spy of printed) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of printed) spy.mockRestore();
      server.closeAllConnections();
      server.close();
    }
  });

  it('stops the provider call when aborted mid-stream: the simulator sees the client close', async () => {
    sim.setPace({ streamTokenMs: 20 });
    const abort = new AbortController();
    let seen = 0;
    const result = await anthropic.stream({
      model: SONNET,
      request: claude('Write a long story about a queue', { max_tokens: 400 }),
      signal: abort.signal,
      onEvent: (data) => {
        if ((JSON.parse(data) as { type: string }).type === 'content_block_delta' && ++seen === 3) abort.abort();
      },
    });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.progress.outputText.length).toBeGreaterThan(0);
    await expect.poll(() => sim.stats().admissions.at(-1)?.done, { timeout: 5_000 }).toBe(true);
    const admission = sim.stats().admissions.at(-1)!;
    expect(admission).toMatchObject({ streamed: true, clientClosed: true });
    expect(admission.outputSent).toBeGreaterThanOrEqual(3);
    expect(admission.outputSent).toBeLessThan(400);
  });

  it('charges a stream stopped while the model thinks its whole output reservation: the streamed text tells nothing of what the thinking cost', async () => {
    sim.setPace({ streamTokenMs: 20 });
    const abort = new AbortController();
    const request = claude('Think about queues', { max_tokens: 2_000, thinking: { type: 'enabled', budget_tokens: 1_024, display: 'omitted' } });
    const result = await anthropic.stream({
      model: SONNET,
      request,
      signal: abort.signal,
      onEvent: (data) => {
        // Omitted thinking streams no text: stop a moment into it.
        if ((JSON.parse(data) as { content_block?: { type: string } }).content_block?.type === 'thinking') setTimeout(() => abort.abort(), 150);
      },
    });
    if (result.ok) throw new Error('expected the stream to be stopped');
    expect(result.progress).toMatchObject({ outputText: '', hiddenOutput: true });
    await expect.poll(() => sim.stats().admissions.at(-1)?.done, { timeout: 5_000 }).toBe(true);
    const billed = sim.stats().admissions.at(-1)!.outputSent;
    expect(billed).toBeGreaterThan(0);
    const reservation: Reservation = {
      id: 'r1',
      pool: SONNET,
      lane: 'high',
      need: { requests: 1, inputTokens: 10, outputTokens: 2_000 },
      chargedAgainst: { rpm: 0, itpm: 0, otpm: 0, tpm: 0, tenantRpm: 0, tenantTpm: 0 },
      grantedAtMs: Date.now(),
    };
    // Counted from its text, it was charged nothing of what the provider billed.
    expect(producedSoFar(result.progress, reservation).outputTokens).toBe(2_000);
    expect(producedSoFar({ ...result.progress, outputTokens: 37 }, reservation).outputTokens).toBe(37);
    const { hiddenOutput: _h, ...shown } = result.progress;
    expect(producedSoFar(shown, reservation).outputTokens).toBe(0);
  });

  it("OpenAI: marks hidden reasoning from a Responses stream's reasoning item and from a Chat request's reasoning_effort", () => {
    const responses = new OpenAIResponsesAccumulator();
    responses.add({ type: 'response.created', sequence_number: 0, response: { id: 'resp_1' } });
    expect(responses.progress().hiddenOutput).toBeUndefined();
    responses.add({ type: 'response.output_item.added', sequence_number: 1, output_index: 0, item: { id: 'rs_1', type: 'reasoning', summary: [] } });
    expect(responses.progress()).toMatchObject({ outputText: '', hiddenOutput: true });
    expect(new OpenAIStreamAccumulator(true, true).progress().hiddenOutput).toBe(true);
    expect(new OpenAIStreamAccumulator(true).progress().hiddenOutput).toBeUndefined();
  });
});

/** One Anthropic SSE event as the API writes it. */
function sse(event: string, data: object): string {
  return `event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`;
}
const opening = [
  sse('message_start', { message: { id: 'msg_scripted', type: 'message', role: 'assistant', model: SONNET, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 5, output_tokens: 1 } } }),
  sse('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
];
const delta = (text: string) => sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text } });
const closing = [sse('content_block_stop', { index: 0 }), sse('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } }), sse('message_stop', {})];

/** An Anthropic stream from a server that writes `script` in order: text is written, a number is waited (ms). */
async function scriptedAnthropicStream(script: (string | number)[], bounds: { timeoutMs: number; streamIdleMs: number }): Promise<ProviderStreamResult> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const step of script) {
        if (res.destroyed) return;
        if (typeof step === 'number') await new Promise((resolve) => setTimeout(resolve, step));
        else res.write(step);
      }
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    return await new AnthropicAdapter({ apiKey: KEY, baseURL: url, ...bounds }).stream({ model: SONNET, request: claude('Scripted'), onEvent: () => {} });
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}
