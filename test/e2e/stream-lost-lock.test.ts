/**
 * A healthy stream whose worker loses the job's lock mid-stream: Redis stalls (SIGSTOP of a
 * redis-server this file owns) longer than `dispatch.lockMs`, so the job's lock lapses and the
 * stalled check hands the job to a rerun, while the first attempt's provider call runs on and
 * keeps relaying. The rerun used to fail the job STREAM_FAILED ("an earlier attempt of this job
 * already streamed part of an answer") while that call streamed the whole answer into the relay
 * for nobody; it now follows the relay to its end and completes the job with that answer. The
 * client reads one whole answer through the official SDK, and the provider saw one call.
 */
import type Anthropic from '@anthropic-ai/sdk';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { laneKeys, laneOfJobId } from '@headroom/queue';
import { Producer } from '@headroom/producer-sdk';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { SIM_MODELS, SONNET, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';
import { readStream } from '../support/sdk-streams.js';

let redis: EmbeddedRedis;
let sim: Simulator;
let fleet: GatewayFleet;

/** Longer than the lock: the job's lock lapses while Redis is stopped. */
const LOCK_MS = 5_000;
const STALL_MS = 8_000;

beforeAll(async () => {
  // A port of this file's own range: the stall stops every client of this server, and no other.
  redis = await startEmbeddedRedis({ port: 17_100 + (process.pid % 100) });
  // 300 tokens, 50 ms apart: the answer streams for some 15 s, so about 6 s of it are still to
  // come when Redis is back and the rerun takes the job (a rerun after the end found the whole
  // answer in the relay and completed the job with it before this fix too).
  sim = await startSimulator({ latencyMs: 5, models: SIM_MODELS, outputTokens: { min: 300, max: 300 } });
  sim.setPace({ streamTokenMs: 50 });
  fleet = await startGatewayFleet(redis.url, sim, { dispatch: { lockMs: LOCK_MS, stalledIntervalMs: 1_000 } }, { workers: 2 });
});
afterAll(async () => {
  redis?.process.kill('SIGCONT');
  await fleet?.close();
  await sim?.close();
  await redis?.stop();
});

describe('a stream whose worker lost its lock while Redis stalled', () => {
  it('reaches the client whole from its one provider call, and its job completes with that answer', async () => {
    const before = sim.stats().models[SONNET]?.admitted ?? 0;
    const { data: stream, response } = await fleet
      .anthropic()
      .messages.create({ model: SONNET, max_tokens: 400, stream: true, messages: [{ role: 'user', content: 'A long story, please.' }] })
      .withResponse();
    const jobId = response.headers.get('headroom-job-id');
    let text = '';
    const read = await readStream(
      (async function* () {
        for await (const event of stream) {
          if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
          yield event;
        }
      })(),
      (e) => (e as Anthropic.RawMessageStreamEvent).type === 'message_stop',
      {
        at: 10,
        run: async () => {
          redis.process.kill('SIGSTOP');
          await new Promise((r) => setTimeout(r, STALL_MS));
          redis.process.kill('SIGCONT');
        },
      },
    );
    expect(read).toMatchObject({ ended: 'cleanly', whole: true });
    expect(sim.stats().models[SONNET]?.admitted ?? 0).toBe(before + 1);
    // The job's result is that answer: its text, from the one call.
    const producer = new Producer({ redis: redis.url, prefix: fleet.prefix });
    try {
      expect(jobId).toBeTruthy();
      const result = await producer.handleOf(jobId!).result({ timeoutMs: 30_000 });
      const content = (result.response as Anthropic.Message).content;
      expect(content.map((b) => (b.type === 'text' ? b.text : '')).join('')).toBe(text);
      expect(result.usage.outputTokens).toBeGreaterThan(0);
    } finally {
      await producer.close();
    }
    // It did lose its lock: the stalled check handed it to a rerun (BullMQ started it twice).
    const lane = laneOfJobId(jobId!)!;
    const k = laneKeys(fleet.prefix, lane);
    const conn = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(k.queueName, { prefix: k.bullPrefix, connection: conn });
    try {
      expect((await queue.getJob(jobId!))?.attemptsStarted).toBe(2);
    } finally {
      await queue.close();
      conn.disconnect();
    }
  });
});
