/**
 * Redis restarted empty while the gateway streams answers (here FLUSHALL and every client
 * connection killed, on a private redis-server): the streams' jobs and relays are gone, so their
 * answers cannot have their end. Both SDKs must raise, never end the stream cleanly, truncated: the
 * gateway ended it cleanly (its catch took any error for one whose error event was written), and
 * the OpenAI SDK's loop just stopped, short, with no finish_reason. Then it cut the connection,
 * and the SDKs raised a bare `TypeError: terminated`; the gateway, alive, now ends each stream
 * with an error event in the API's shape, which each SDK raises as its APIError.
 *
 * And a live gateway's calls made once Redis is back: its entry in the fleet's gateways went with
 * the data, and it named itself on them until its next beat, so the workers withdrew them as a
 * gateway gone. It now beats as soon as its connection is back and names itself on no job until then.
 * With the connections left open (a bare FLUSHALL) there is no reconnect: a worker now takes an
 * entry absent (not lapsed) for gone only once it has been absent longer than one beat's lifetime.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { fleetKeys, laneKeys } from '@headroom/queue';
import { GATEWAY_KEYS, GPT, SIM_MODELS, SONNET, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';
import { sleep, until } from '../support/probes.js';
import { readStream } from '../support/sdk-streams.js';

let redis: EmbeddedRedis;
let sim: Simulator;
let fleet: GatewayFleet;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  // 300 tokens every 50 ms: a stream still runs when Redis loses everything.
  sim = await startSimulator({ latencyMs: 5, models: SIM_MODELS, outputTokens: { min: 300, max: 300 } });
  sim.setPace({ streamTokenMs: 50 });
  fleet = await startGatewayFleet(redis.url, sim);
});
afterAll(async () => {
  await fleet?.close();
  await sim?.close();
  await redis?.stop();
});

describe('Redis restarted empty', () => {
  it('both SDKs raise: the streams are cut, never ended cleanly, truncated', async () => {
    let lose: () => void = () => {};
    const lost = new Promise<void>((resolve) => {
      lose = resolve;
    });
    let readers = 0;
    // Once both streams have 5 events in, Redis loses everything, as one restarted empty.
    const bothIn = async () => {
      if (++readers === 2) lose();
      await lost;
    };
    const chat = readStream(
      await fleet.openai().chat.completions.create({ model: GPT, max_completion_tokens: 400, stream: true, messages: [{ role: 'user', content: 'A long story, please.' }] }),
      (c) => (c as OpenAI.ChatCompletionChunk).choices[0]?.finish_reason != null,
      { at: 5, run: bothIn },
    );
    const message = readStream(
      await fleet.anthropic().messages.create({ model: SONNET, max_tokens: 400, stream: true, messages: [{ role: 'user', content: 'A long story, please.' }] }),
      (e) => (e as Anthropic.RawMessageStreamEvent).type === 'message_stop',
      { at: 5, run: bothIn },
    );
    await lost;
    const admin = new Redis(redis.url);
    try {
      await admin.flushall();
      await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    } finally {
      admin.disconnect();
    }
    const [chatCut, messageCut] = await Promise.all([chat, message]);
    for (const cut of [chatCut, messageCut]) {
      expect(cut).toMatchObject({ ended: 'with an error', whole: false });
      expect(cut.events).toBeGreaterThanOrEqual(5);
    }
    // The gateway lives on and says so: each SDK raises its API error, not a bare `TypeError: terminated`.
    expect(chatCut.error).toBeInstanceOf(OpenAI.APIError);
    expect(messageCut.error).toBeInstanceOf(Anthropic.APIError);
    for (const cut of [chatCut, messageCut]) expect((cut.error as Error).message).toContain('STREAM_FAILED: the rest of this answer cannot be streamed');
  });

  it("a live gateway's calls right after Redis came back empty run: it is not taken for gone before its next beat", async () => {
    // Each runs: none withdrawn `CANCELLED` as a gateway gone (the gateway named itself on them
    // while its entry was gone, and the workers withdrew them until its next beat).
    await callsAfterLosingEverything({ connectionsCut: true });
  });

  it("a live gateway's calls right after a FLUSHALL that left the connections open run: its entry absent is not taken for gone before its beat is due", async () => {
    // No reconnect, so no beat at once. Each runs: absent, not lapsed, the gateway's entry is gone
    // only once absent longer than its beats vouch for (they were withdrawn until its next beat).
    await callsAfterLosingEverything({ connectionsCut: false });
  });
});

/**
 * A live gateway beating only every 20 s (Redis loses its entry long before its next beat is due)
 * answers a call; Redis loses everything (FLUSHALL, and every client connection cut or not); once
 * the workers have published the fleet's settings again, three calls through it are each answered.
 */
async function callsAfterLosingEverything({ connectionsCut }: { connectionsCut: boolean }): Promise<void> {
  const gateway = await fleet.gatewayWith({ heartbeatMs: 20_000 });
  const client = new Anthropic({ apiKey: GATEWAY_KEYS.app, baseURL: gateway.url, maxRetries: 0 });
  const ask = (i: number) => client.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: `Still there? ${i}` }] });
  expect((await ask(0)).type).toBe('message');
  const admin = new Redis(redis.url);
  try {
    await admin.flushall();
    if (connectionsCut) await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    // The workers publish the fleet's settings again (until then every call is refused FLEET_UNPUBLISHED).
    await until(async () => (await admin.exists(laneKeys(fleet.prefix, 'normal').settings)) === 1, 30_000, 'the settings published again');
    // Its connection left open, the gateway has not beaten again: its entry is absent as the calls are made.
    if (!connectionsCut) expect(await admin.hexists(fleetKeys(fleet.prefix).gateways, gateway.id)).toBe(0);
  } finally {
    admin.disconnect();
  }
  // A worker answers from a read of the gateways at most 1 s old (gateway-presence.ts): past
  // that, every read it makes was made after Redis lost the entry.
  await sleep(1_500);
  for (let i = 1; i <= 3; i++) expect((await ask(i)).type).toBe('message');
}
