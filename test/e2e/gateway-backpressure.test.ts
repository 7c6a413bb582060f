/**
 * Backpressure through the gateway is the SDK's own retry: a full lane answers 429 with
 * `retry-after`, and the official SDK, retrying by itself, succeeds once the lane drains. A call
 * that cannot start within its max wait is cancelled and answered 529 (Anthropic) / 503 (OpenAI)
 * with `retry-after`; a provider's 4xx comes back with its own status and message, not retried. A
 * retry of a 529 under the same `headroom-idempotency-key` runs the job again.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { laneKeys } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { GATEWAY_KEYS, GPT, HAIKU, SIM_MODELS, SONNET, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';

let redis: EmbeddedRedis;
let sim: Simulator;
let fleet: GatewayFleet;
let admin: Redis;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
  sim = await startSimulator({ latencyMs: 600, models: SIM_MODELS });
  // One call at a time, and HIGH holds two waiting calls at most; a job gives up after two
  // attempts, soon.
  fleet = await startGatewayFleet(redis.url, sim, { dispatch: { concurrency: 1 }, lanes: { high: { cap: 2 } }, retry: { maxAttempts: 2, baseDelayMs: 50, maxDelayMs: 100 } });
});
afterAll(async () => {
  await fleet?.close();
  await sim?.close();
  admin?.disconnect();
  await redis?.stop();
});

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
// A fair lane keeps its waiting jobs in BullMQ's prioritized set.
const waitingInHigh = async () => (await admin.llen(laneKeys(fleet.prefix, 'high').wait)) + (await admin.zcard(laneKeys(fleet.prefix, 'high').prioritized));

/** The official SDK with its own retries on, recording each answer it got. */
function retryingClient(maxRetries: number) {
  const answers: { status: number; jobId: string | null }[] = [];
  const client = new Anthropic({
    apiKey: GATEWAY_KEYS.app,
    baseURL: fleet.gateway.url,
    maxRetries,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      answers.push({ status: res.status, jobId: res.headers.get('headroom-job-id') });
      return res;
    },
  });
  return { client, answers };
}

const ask = (content: string, model = SONNET) => ({ model, max_tokens: 16, messages: [{ role: 'user' as const, content }] });
const HIGH = { headers: { 'headroom-priority': 'high' } };

describe('backpressure through the gateway', () => {
  it("answers a full lane with 429 and retry-after, and the SDK's own retry succeeds once it drains", async () => {
    const client = fleet.anthropic();
    // One runs, two wait: the lane is at its cap.
    const running = client.messages.create(ask('first'), HIGH);
    await until('the first call to start', async () => sim.stats().admissions.length > 0);
    const waiting = [client.messages.create(ask('second'), HIGH), client.messages.create(ask('third'), HIGH)];
    await until('two calls waiting', async () => (await waitingInHigh()) === 2);

    const refused = await fetch(`${fleet.gateway.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': GATEWAY_KEYS.app, 'headroom-priority': 'high' },
      body: JSON.stringify(ask('refused')),
    });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('headroom-error-code')).toBe('QUEUE_FULL');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await refused.json()).toMatchObject({ type: 'error', error: { type: 'rate_limit_error', message: expect.stringContaining('lane high is full') } });

    // The same SDK, retries on: its first attempt meets the full lane, a later one gets in.
    const retrying = retryingClient(5);
    const answer = await retrying.client.messages.create(ask('patient'), HIGH);
    expect(answer.content.length).toBeGreaterThan(0);
    expect(retrying.answers[0]?.status).toBe(429);
    expect(retrying.answers.at(-1)?.status).toBe(200);
    await Promise.all([running, ...waiting]);
  });

  it('cancels a call that cannot start within headroom-max-wait-ms and answers 529 (Anthropic) / 503 (OpenAI) with retry-after', async () => {
    const busy = fleet.anthropic().messages.create(ask('busy'), HIGH);
    await new Promise((r) => setTimeout(r, 50));
    const headers = { 'content-type': 'application/json', 'headroom-max-wait-ms': '50', 'headroom-priority': 'low' };
    const [a, o] = await Promise.all([
      fetch(`${fleet.gateway.url}/v1/messages`, { method: 'POST', headers: { ...headers, 'anthropic-version': '2023-06-01', 'x-api-key': GATEWAY_KEYS.app }, body: JSON.stringify(ask('late', HAIKU)) }),
      fetch(`${fleet.gateway.url}/v1/chat/completions`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${GATEWAY_KEYS.app}` }, body: JSON.stringify({ model: GPT, max_completion_tokens: 16, messages: [{ role: 'user', content: 'late' }] }) }),
    ]);
    expect(a.status).toBe(529);
    expect(await a.json()).toMatchObject({ type: 'error', error: { type: 'overloaded_error', message: expect.stringContaining('did not start within 50 ms') } });
    expect(o.status).toBe(503);
    expect(await o.json()).toMatchObject({ error: { type: 'server_error', message: expect.stringContaining('did not start within 50 ms') } });
    for (const r of [a, o]) expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await busy;
    // Cancelled: never sent.
    expect(sim.stats().admissions.some((x) => x.model === HAIKU || x.model === GPT)).toBe(false);
  });

  it('gives each client sharing a job its own start deadline: past it, one gets its 529 / 503 while the other gets the answer', async () => {
    const admitted = (model: string) => sim.stats().admissions.filter((x) => x.model === model).length;
    const before = { haiku: admitted(HAIKU), gpt: admitted(GPT), all: sim.stats().admissions.length };
    // Two CRITICAL calls hold the one slot for about 1.2 s, well past the hasty clients' 100 ms.
    const busy = [1, 2].map((n) => fleet.anthropic().messages.create(ask(`busy ${n}`), { headers: { 'headroom-priority': 'critical' } }));
    await until('the busy call to start', async () => sim.stats().admissions.length > before.all);
    const shared = { 'content-type': 'application/json', 'headroom-priority': 'high', 'headroom-coalesce': 'true' };
    const anthropicHeaders = { ...shared, 'anthropic-version': '2023-06-01', 'x-api-key': GATEWAY_KEYS.app };
    const openaiHeaders = { ...shared, authorization: `Bearer ${GATEWAY_KEYS.app}` };
    const plain = JSON.stringify(ask('one answer for two', HAIKU));
    const streamed = JSON.stringify({ model: GPT, max_completion_tokens: 16, stream: true, messages: [{ role: 'user', content: 'one stream for two' }] });
    const post = (path: string, headers: Record<string, string>, body: string, maxWaitMs: number) =>
      fetch(`${fleet.gateway.url}${path}`, { method: 'POST', headers: { ...headers, 'headroom-max-wait-ms': String(maxWaitMs) }, body });
    const [patientPlain, hastyPlain, patientStream, hastyStream] = await Promise.all([
      post('/v1/messages', anthropicHeaders, plain, 20_000),
      post('/v1/messages', anthropicHeaders, plain, 100),
      post('/v1/chat/completions', openaiHeaders, streamed, 20_000),
      post('/v1/chat/completions', openaiHeaders, streamed, 100),
    ]);
    // The hasty clients were told at their own deadline, while the job was still waiting for the busy call.
    expect(hastyPlain.status).toBe(529);
    expect(await hastyPlain.json()).toMatchObject({ error: { type: 'overloaded_error', message: expect.stringContaining('did not start within 100 ms') } });
    expect(hastyStream.status).toBe(503);
    expect(await hastyStream.json()).toMatchObject({ error: { message: expect.stringContaining('did not start within 100 ms') } });
    // Each shared job ran once, for the patient client, which got the whole answer.
    expect(patientPlain.status).toBe(200);
    expect(patientPlain.headers.get('headroom-job-id')).toBe(hastyPlain.headers.get('headroom-job-id'));
    expect(((await patientPlain.json()) as { content: unknown[] }).content.length).toBeGreaterThan(0);
    expect(patientStream.status).toBe(200);
    const events = await patientStream.text();
    expect(events).toMatch(/"finish_reason":"(stop|length)"/);
    expect(events.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(admitted(HAIKU) - before.haiku).toBe(1);
    expect(admitted(GPT) - before.gpt).toBe(1);
    await Promise.all(busy);
  });

  it("runs the job again when the SDK retries a 529 with the same headroom-idempotency-key", async () => {
    // The job's two attempts meet 529s: it ends RETRIES_EXHAUSTED, answered 529 with retry-after.
    sim.injectFaults({ model: HAIKU, status: 529, count: 2 });
    const { client, answers } = retryingClient(2);
    const answer = await client.messages.create(ask('retried under one key', HAIKU), { headers: { 'headroom-priority': 'high', 'headroom-idempotency-key': 'sdk-retry-1' } });
    expect(answer.content.length).toBeGreaterThan(0);
    // The SDK's retry carried the same key: the same job, run again. Before, the repeat was given
    // the failure again at once, and the SDK's retries all ended 529.
    expect(answers.map((a) => a.status)).toEqual([529, 200]);
    expect(answers[1]!.jobId).toBe(answers[0]!.jobId);
    expect(sim.stats().models[HAIKU]?.faultsInjected['529']).toBe(2);
    sim.clearFaults();
  });

  it("passes a provider's 4xx through with its status and message, and tells the SDK not to retry", async () => {
    // The simulator refuses max_tokens above the model's ceiling, as Anthropic does.
    const res = await fetch(`${fleet.gateway.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': GATEWAY_KEYS.app },
      body: JSON.stringify({ model: SONNET, max_tokens: 70_000, messages: [{ role: 'user', content: 'too long' }] }),
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('x-should-retry')).toBe('false');
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringContaining('max_tokens') } });
  });

  it("answers each provider refusal with the provider's status, so the SDK raises its own error class, with the provider's request id", async () => {
    const anthropic = fleet.anthropic(GATEWAY_KEYS.app, { maxRetries: 0 });
    const openai = fleet.openai(GATEWAY_KEYS.app, { maxRetries: 0 });
    const cases = [
      [401, Anthropic.AuthenticationError, OpenAI.AuthenticationError],
      [403, Anthropic.PermissionDeniedError, OpenAI.PermissionDeniedError],
      [404, Anthropic.NotFoundError, OpenAI.NotFoundError],
      [413, Anthropic.APIError, OpenAI.APIError],
    ] as const;
    for (const [status, anthropicClass, openaiClass] of cases) {
      sim.injectFaults([{ model: SONNET, status, count: 1 }, { model: GPT, status, count: 1 }]);
      const a = await anthropic.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: `refused ${status}` }] }).then(() => undefined, (e: unknown) => e);
      expect(a, `anthropic ${status}`).toBeInstanceOf(anthropicClass);
      expect((a as InstanceType<typeof Anthropic.APIError>).status).toBe(status);
      expect((a as InstanceType<typeof Anthropic.APIError>).requestID).toMatch(/^req_011\w{21}$/);
      // Whose refusal it is: the provider's, of the fleet's key (a 401 of the caller's own key says GATEWAY_KEY_INVALID).
      expect((a as InstanceType<typeof Anthropic.APIError>).headers?.get('headroom-error-code')).toBe('PROVIDER_REJECTED');
      const o = await openai.chat.completions.create({ model: GPT, max_completion_tokens: 16, messages: [{ role: 'user', content: `refused ${status}` }] }).then(() => undefined, (e: unknown) => e);
      expect(o, `openai ${status}`).toBeInstanceOf(openaiClass);
      expect((o as InstanceType<typeof OpenAI.APIError>).status).toBe(status);
      expect((o as InstanceType<typeof OpenAI.APIError>).requestID).toMatch(/^req_\w{32}$/);
      expect((o as InstanceType<typeof OpenAI.APIError>).headers?.get('headroom-error-code')).toBe('PROVIDER_REJECTED');
    }
    sim.clearFaults();
  });
});
