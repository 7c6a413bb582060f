/**
 * A misbehaving provider as a client of the gateway sees it, through the unmodified official SDKs:
 *
 * - a model answering garbage (a 200 whose body is not JSON) to every call is a failing model, as
 *   one answering 500 is: the calls' answers come from the fallback, `headroom-model` names it
 *   (the throttle counted garbage as served, so every call spent its attempts on the primary and
 *   failed RETRIES_EXHAUSTED);
 * - a provider that hangs (no head) is given up on at the call's timeout, and the call retried;
 * - a stream the provider stalls half-way is cut once the provider has been silent for
 *   `streamIdleMs`, and the client's stream ends with an error event that says so; the job fails
 *   STREAM_FAILED naming it (it was cut at the call's timeout, 600 s by default, and before that
 *   blamed the provider: `the stream ended before its message_stop event`).
 */
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '@headroom/producer-sdk';
import { HAIKU, SONNET, startGatewayStack, type GatewayStack } from '../support/gateway-fleet.js';
import { until } from '../support/probes.js';

/** Short, so a hung call is given up on within the test; every other call answers in ms. */
const PROVIDER_TIMEOUT_MS = 2_000;
/** Shorter still, and apart from the call timeout, so the stalled stream's cut names the one that cut it. */
const STREAM_IDLE_MS = 1_500;

let stack: GatewayStack;

beforeAll(async () => {
  stack = await startGatewayStack({ latencyMs: 2 }, (sim) => ({
    providers: {
      anthropic: { baseURL: sim.url, apiKeyEnv: 'GW_PROVIDER_KEY', timeoutMs: PROVIDER_TIMEOUT_MS, streamIdleMs: STREAM_IDLE_MS },
      openai: { baseURL: `${sim.url}/v1`, apiKeyEnv: 'GW_PROVIDER_KEY', timeoutMs: PROVIDER_TIMEOUT_MS, streamIdleMs: STREAM_IDLE_MS },
    },
  }));
});
afterAll(async () => {
  await stack?.close();
});

const claude = (content: string) => ({ model: SONNET, max_tokens: 40, messages: [{ role: 'user' as const, content }] });

describe('a misbehaving provider, through the gateway', () => {
  it("answers from the fallback when the primary answers garbage to every call, and headroom-model says which", async () => {
    const { sim, fleet } = stack;
    sim.clearFaults();
    sim.injectFaults({ model: SONNET, malformed: true });
    try {
      const answers = await Promise.all(
        Array.from({ length: 12 }, (_, i) => fleet.anthropic().messages.create(claude(`garbage storm ${i}`), { headers: { 'headroom-fallback': HAIKU } }).withResponse()),
      );
      for (const { data, response } of answers) {
        expect(data.model).toBe(HAIKU);
        expect(response.headers.get('headroom-model')).toBe(HAIKU);
      }
      // The primary's garbage was each call's failure for a while, not each call's six attempts.
      expect(sim.stats().models[SONNET]?.faultsInjected.malformed).toBeLessThan(12 * 6);
    } finally {
      sim.clearFaults();
    }
  });

  it("abandons a call the provider hangs on (no head) at the call's timeout and retries it: the client gets the answer, the job two attempts", async () => {
    const { sim, fleet, producer } = stack;
    sim.clearFaults();
    sim.injectFaults({ model: HAIKU, hang: true, count: 1 });
    const { data, response } = await fleet.anthropic().messages.create({ model: HAIKU, max_tokens: 20, messages: [{ role: 'user', content: 'A provider that hangs' }] }, { headers: { 'headroom-fallback': 'none' } }).withResponse();
    expect(data.model).toBe(HAIKU);
    const job = await producer.getJob(response.headers.get('headroom-job-id')!);
    expect(job?.result?.attempts).toBe(2);
    expect(sim.stats().models[HAIKU]?.faultsInjected.hang).toBe(1);
  });

  it('ends a stream the provider stalls half-way with an error event saying how long the provider was silent (streamIdleMs), and fails its job STREAM_FAILED', async () => {
    const { sim, fleet, producer } = stack;
    sim.clearFaults();
    sim.injectFaults({ model: HAIKU, stall: true, count: 1 });
    const stream = fleet.anthropic().messages.stream({ model: HAIKU, max_tokens: 60, messages: [{ role: 'user', content: 'A stream that stalls' }] }, { headers: { 'headroom-fallback': 'none' } });
    const texts: string[] = [];
    stream.on('text', (t) => texts.push(t));
    const { response } = await stream.withResponse();
    const err = await stream.finalMessage().then(
      () => undefined,
      (e: unknown) => e,
    );
    // Part of the answer came: the stream cannot be retried, and its error event is the API's.
    expect(texts.length).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    const silent = `the provider sent nothing for ${STREAM_IDLE_MS} ms (stream idle timeout, providers.anthropic.streamIdleMs)`;
    expect((err as InstanceType<typeof Anthropic.APIError>).error).toEqual({ type: 'error', error: { type: 'api_error', message: silent } });
    const jobId = response.headers.get('headroom-job-id')!;
    const seen: { job?: Awaited<ReturnType<Producer['getJob']>> } = {};
    await until(async () => {
      seen.job = await producer.getJob(jobId);
      return seen.job?.state === 'failed';
    }, 10_000, `job ${jobId} failed`);
    const escaped = silent.replace(/[().]/g, '\\$&');
    expect(seen.job?.failure).toMatchObject({ code: 'STREAM_FAILED', message: expect.stringMatching(new RegExp(`^network ${escaped} \\(after \\d+ events had been streamed\\)$`)) });
    expect(sim.stats().models[HAIKU]?.faultsInjected.stall).toBe(1);
  });
});
