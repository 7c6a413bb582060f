/**
 * Redis restarted empty while the gateway streams answers (here FLUSHALL and every client
 * connection killed, on a private redis-server): the streams' jobs and relays are gone, so their
 * answers cannot have their end. Both SDKs must raise, never end the stream cleanly, truncated: the
 * gateway ended it cleanly (its catch took any error for one whose error event was written), and
 * the OpenAI SDK's loop just stopped, short, with no finish_reason. Then it cut the connection,
 * and the SDKs raised a bare `TypeError: terminated`; the gateway, alive, now ends each stream
 * with an error event in the API's shape, which each SDK raises as its APIError.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { GPT, SIM_MODELS, SONNET, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';
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

describe('Redis restarted empty mid-stream', () => {
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
});
