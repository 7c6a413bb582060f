/**
 * `headroom gateway` (the CLI process) stopped by SIGTERM, as a rolling deploy stops it: it takes
 * no new connection, answers the calls it holds (plain and streamed, through the official SDKs)
 * within `gateway.shutdownGraceMs` and exits 0; past the grace it cuts what is left, and a cut
 * stream's provider call is stopped, a call not started withdrawn (cancelled, as its client would
 * have it: its SDK sends it again elsewhere). Each kept-alive connection is closed as soon as its
 * answer ends, whether the answer began before SIGTERM or after. A stream whose answer began after
 * SIGTERM is cut too, and both SDKs raise: its head said `connection: close`, after which their
 * fetch (undici) took the cut for the body's end and the stream ended cleanly, truncated. And one
 * killed outright (SIGKILL) leaves the calls already at the provider to end completed when they end
 * before its heartbeat lapses (gateway-gone.test.ts: what is left then is withdrawn).
 */
import { Agent, request, type IncomingMessage } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, laneKeys, parseConfig, type HeadroomConfigInput } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { startWorker, type RunningWorker } from '@headroom/worker';
import { loggedLine, spawnHeadroom, stopAll, writeConfig, type FleetProcess } from '../support/fleet.js';
import { readStream } from '../support/sdk-streams.js';

const SONNET = 'claude-sonnet-4-6';
const GPT = 'gpt-4.1';
const KEY = 'hr-gw-drain-key-0123456789abcdef';
const ENV = { DRAIN_PROVIDER_KEY: 'sk-drain-provider', DRAIN_GATEWAY_KEY: KEY, HEADROOM_LOG_LEVEL: 'info' };

let redis: EmbeddedRedis;
let sim: Simulator;
let worker: RunningWorker;
const gateways: FleetProcess[] = [];

function configInput(prefix: string, shutdownGraceMs: number): HeadroomConfigInput {
  return {
    redis: { prefix },
    providers: {
      anthropic: { baseURL: sim.url, apiKeyEnv: 'DRAIN_PROVIDER_KEY' },
      openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: 'DRAIN_PROVIDER_KEY' },
    },
    models: { [SONNET]: { provider: 'anthropic' }, [GPT]: { provider: 'openai' } },
    gateway: { host: '127.0.0.1', keys: { app: { keyEnv: 'DRAIN_GATEWAY_KEY' } }, shutdownGraceMs },
  };
}

/** A `headroom gateway` process on the worker's lanes, once it listens. */
async function startGatewayProcess(shutdownGraceMs: number): Promise<{ proc: FleetProcess; url: string }> {
  const port = await freePort();
  const file = writeConfig(configInput('drain', shutdownGraceMs));
  const proc = spawnHeadroom(['gateway', '--config', file, '--redis', redis.url, '--port', String(port)], ENV);
  gateways.push(proc);
  await loggedLine(proc, '"msg":"gateway started"');
  return { proc, url: `http://127.0.0.1:${port}` };
}

/** Resolves once the simulator holds `n` calls in flight. */
async function callsInFlight(n: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (sim.stats().admissions.filter((a) => !a.done).length < n) {
    if (Date.now() > deadline) throw new Error(`fewer than ${n} calls reached the provider`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A streamed chat call on a kept-alive connection of its own (node:http, so its socket can be
 * watched), once its head is in: the head's `connection`, its body once read whole, and when its
 * answer and its connection end, pushed to `order` as they happen.
 */
async function rawStream(url: string, maxTokens: number, name: string, order: string[]): Promise<{ connection: string | undefined; body: Promise<string>; closed: Promise<void> }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const payload = JSON.stringify({ model: GPT, max_completion_tokens: maxTokens, stream: true, messages: [{ role: 'user', content: 'Go on at length.' }] });
  let closed: Promise<void> = Promise.resolve();
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', agent, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' } }, resolve);
    req.once('socket', (socket) => {
      closed = new Promise((done) =>
        socket.once('close', () => {
          order.push(`${name} connection closed`);
          done();
        }),
      );
    });
    req.once('error', reject);
    req.end(payload);
  });
  const body = new Promise<string>((resolve, reject) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      text += chunk;
    });
    res.once('end', () => {
      order.push(`${name} answer ended`);
      resolve(text);
    });
    res.once('error', reject);
  });
  return { connection: res.headers.connection, body, closed };
}

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  // Each call takes 2 s; a stream's deltas are spread over it.
  sim = await startSimulator({ latencyMs: 2_000 });
  worker = await startWorker({ config: parseConfig(configInput('drain', 1_000)), redisUrl: redis.url, env: ENV, logger: createLogger({ level: 'silent' }) });
});
afterAll(async () => {
  await stopAll(gateways, 'SIGKILL');
  await worker?.close({ graceMs: 1_000 });
  await sim?.close();
  await redis?.stop();
});

describe('headroom gateway on SIGTERM', () => {
  it('answers the plain and streamed calls it holds, refuses new connections, and exits 0', async () => {
    const { proc, url } = await startGatewayProcess(20_000);
    const anthropic = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
    const openai = new OpenAI({ apiKey: KEY, baseURL: `${url}/v1`, maxRetries: 0 });
    const direct = new Anthropic({ apiKey: ENV.DRAIN_PROVIDER_KEY, baseURL: sim.url, maxRetries: 0 });
    const question = { model: SONNET, max_tokens: 64, messages: [{ role: 'user' as const, content: 'What does a drain do?' }] };
    const plain = anthropic.messages.create(question);
    const chatBody = { model: GPT, max_completion_tokens: 64, messages: [{ role: 'user' as const, content: 'Count the calls.' }] };
    const streamed = openai.chat.completions.stream({ ...chatBody, stream_options: { include_usage: true } }).finalChatCompletion();
    await callsInFlight(2);

    proc.child.kill('SIGTERM');
    // No new connection once it stops listening (a load balancer's probe fails, calls go elsewhere).
    // One accepted just before is reset with the idle connections; the next is refused.
    const refusedAt = Date.now() + 5_000;
    let code: string | undefined;
    while (code !== 'ECONNREFUSED' && Date.now() < refusedAt) {
      const err = await fetch(`${url}/healthz`).then(() => undefined, (e: unknown) => e as Error);
      code = (err?.cause as NodeJS.ErrnoException | undefined)?.code;
      if (code !== 'ECONNREFUSED') await new Promise((r) => setTimeout(r, 20));
    }
    expect(code).toBe('ECONNREFUSED');

    // The calls in flight still get their whole answers.
    const [answer, chat] = await Promise.all([plain, streamed]);
    expect(answer.content).toEqual((await direct.messages.create(question)).content);
    const directChat = await new OpenAI({ apiKey: ENV.DRAIN_PROVIDER_KEY, baseURL: `${sim.url}/v1`, maxRetries: 0 }).chat.completions.create(chatBody);
    expect(chat.choices[0]?.message.content).toBe(directChat.choices[0]?.message.content);
    expect(chat.usage).toEqual(directChat.usage);
    expect(await proc.exited).toBe(0);
    expect(sim.stats().models[GPT]?.clientClosed ?? 0).toBe(0);
  });

  it('past its grace cuts the stream it still holds: the client sees the connection close, the provider call is stopped', async () => {
    const { proc, url } = await startGatewayProcess(300);
    const openai = new OpenAI({ apiKey: KEY, baseURL: `${url}/v1`, maxRetries: 0 });
    const closedBefore = sim.stats().models[GPT]?.clientClosed ?? 0;
    // A stream of ~13 s, so it is still running when the cut comes, however busy the machine.
    sim.setPace({ streamTokenMs: 200 });
    try {
      const cut = openai.chat.completions
        .stream({ model: GPT, max_completion_tokens: 64, messages: [{ role: 'user', content: 'Take your time.' }] })
        .finalChatCompletion()
        .then(() => undefined, (err: unknown) => err);
      await callsInFlight(1);
      proc.child.kill('SIGTERM');
      expect(await cut).toBeInstanceOf(Error);
      expect(await proc.exited).toBe(0);
      // The worker stops the provider call once the stream's reader is gone.
      const deadline = Date.now() + 10_000;
      while ((sim.stats().models[GPT]?.clientClosed ?? 0) === closedBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(sim.stats().models[GPT]?.clientClosed ?? 0).toBe(closedBefore + 1);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
  });

  it("closes the kept-alive connection of each stream begun before SIGTERM as soon as its answer ends, while a longer one runs on, and exits once that one is done", async () => {
    const { proc, url } = await startGatewayProcess(30_000);
    // Tokens every 200 ms: the short answer (10 tokens) still streams when SIGTERM lands and ends
    // well before the long one (60 tokens).
    sim.setPace({ streamTokenMs: 200, latencyMs: 100 });
    const order: string[] = [];
    try {
      const [short, long] = await Promise.all([rawStream(url, 10, 'short', order), rawStream(url, 60, 'long', order)]);
      proc.child.kill('SIGTERM');
      const [shortBody, longBody] = await Promise.all([short.body, long.body]);
      // Begun before SIGTERM: their heads said keep-alive, and both answers came whole.
      expect([short.connection, long.connection]).toEqual(['keep-alive', 'keep-alive']);
      expect(shortBody).toContain('data: [DONE]');
      expect(longBody).toContain('data: [DONE]');
      expect(await proc.exited).toBe(0);
      await Promise.all([short.closed, long.closed]);
      // The short answer's connection closed once it ended, not kept for a next call that the
      // gateway would cut: its client's next call opens a new connection, to a live instance.
      expect(order).toEqual(['short answer ended', 'short connection closed', 'long answer ended', 'long connection closed']);
    } finally {
      sim.setPace({ streamTokenMs: null, latencyMs: 2_000 });
    }
  });

  it('past its grace cuts a stream whose answer began after SIGTERM: its head says keep-alive, and both SDKs raise rather than end it as if whole', async () => {
    const { proc, url } = await startGatewayProcess(8_000);
    const anthropic = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
    const openai = new OpenAI({ apiKey: KEY, baseURL: `${url}/v1`, maxRetries: 0 });
    // The calls reach the provider before SIGTERM; their answers begin after it (5 s before the
    // first token) and outlive the grace (over 200 tokens, one every 200 ms). A head that said
    // `connection: close` made the SDKs' fetch (undici) take the connection's close, even a reset,
    // as the body's end, chunked or not.
    sim.setPace({ streamTokenMs: 200, latencyMs: 5_000 });
    const chatEnds = (c: unknown) => (c as OpenAI.ChatCompletionChunk).choices[0]?.finish_reason != null;
    const messageEnds = (e: unknown) => (e as Anthropic.RawMessageStreamEvent).type === 'message_stop';
    const body = { max_tokens: 400, stream: true as const, messages: [{ role: 'user' as const, content: 'Go on at length.' }] };
    try {
      const ends = Promise.all([
        (async () => {
          const { data, response } = await openai.chat.completions.create({ ...body, model: GPT }).withResponse();
          return { ...(await readStream(data, chatEnds)), connection: response.headers.get('connection') };
        })(),
        (async () => {
          const { data, response } = await anthropic.messages.create({ ...body, model: SONNET }).withResponse();
          return { ...(await readStream(data, messageEnds)), connection: response.headers.get('connection') };
        })(),
      ]);
      await callsInFlight(2);
      proc.child.kill('SIGTERM');
      for (const cut of await ends) {
        expect(cut).toMatchObject({ connection: 'keep-alive', ended: 'with an error', whole: false });
        expect(cut.events).toBeGreaterThan(0);
      }
      expect(await proc.exited).toBe(0);
      // Cut by the grace, not for reading slowly.
      expect(proc.output()).not.toContain('too slow');
    } finally {
      sim.setPace({ streamTokenMs: null, latencyMs: 2_000 });
    }
  });

  it('past its grace withdraws the calls it holds that have not started, as their clients would: the jobs end cancelled, with no provider call', async () => {
    const { proc, url } = await startGatewayProcess(300);
    const anthropic = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
    const k = laneKeys('drain', 'normal');
    // The lane is paused (Bull Board's pause): the calls wait in it, unstarted.
    const admin = new Redis(redis.url);
    await admin.hset(k.meta, 'paused', 1);
    const admittedBefore = sim.stats().admissions.length;
    try {
      const calls = [1, 2, 3].map((i) => anthropic.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: `Wait ${i}` }] }).then(() => undefined, (err: unknown) => err));
      const deadline = Date.now() + 20_000;
      while ((await admin.zcard(k.prioritized)) + (await admin.llen(k.paused)) + (await admin.llen(k.wait)) < 3) {
        if (Date.now() > deadline) throw new Error('the calls did not reach the lane');
        await new Promise((r) => setTimeout(r, 20));
      }
      proc.child.kill('SIGTERM');
      for (const err of await Promise.all(calls)) expect(err).toBeInstanceOf(Anthropic.APIConnectionError);
      expect(await proc.exited).toBe(0);
      // Withdrawn: gone from the lane, each with its cancelled note for a caller that asks.
      expect((await admin.zcard(k.prioritized)) + (await admin.llen(k.paused)) + (await admin.llen(k.wait))).toBe(0);
      expect(await admin.keys(`${k.jobCancelled('*')}`)).toHaveLength(3);
      expect(sim.stats().admissions.length).toBe(admittedBefore);
    } finally {
      await admin.hdel(k.meta, 'paused');
      admin.disconnect();
    }
  });

  it('killed mid-call (SIGKILL): its clients see the connection cut, calls that end before its heartbeat lapses (15 s) end completed, and the relayed stream expires', async () => {
    const { proc, url } = await startGatewayProcess(20_000);
    const admin = new Redis(redis.url);
    try {
      const k = laneKeys('drain', 'normal');
      const completedBefore = await admin.zcard(k.completed);
      const anthropic = new Anthropic({ apiKey: KEY, baseURL: url, maxRetries: 0 });
      const body = { model: SONNET, max_tokens: 64, messages: [{ role: 'user' as const, content: 'Are you still there?' }] };
      const plain = anthropic.messages.create(body).then(() => undefined, (err: unknown) => err);
      const streamed = anthropic.messages.stream(body).finalMessage().then(() => undefined, (err: unknown) => err);
      await callsInFlight(2);
      proc.child.kill('SIGKILL');
      for (const cut of await Promise.all([plain, streamed])) expect(cut).toBeInstanceOf(Anthropic.APIConnectionError);
      // Calls of 2 s, already at the provider: they end before the gateway is known gone (its
      // last beat vouches for it for 15 s), and the fleet records them, with nobody left to answer.
      const deadline = Date.now() + 15_000;
      while ((await admin.zcard(k.completed)) < completedBefore + 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await admin.zcard(k.completed)).toBe(completedBefore + 2);
      // The stream's events wait for a reader that is gone: they expire, they are not kept.
      const [, relayed] = await admin.scan('0', 'MATCH', `${k.ownPrefix}events:*`, 'COUNT', 1000);
      expect(relayed.length).toBeGreaterThan(0);
      for (const key of relayed) expect(await admin.pttl(key)).toBeGreaterThan(0);
    } finally {
      admin.disconnect();
    }
  });
});
