/**
 * Backpressure through the gateway is the SDK's own retry: a full lane answers 429 with
 * `retry-after`, and the official SDK, retrying by itself, succeeds once the lane drains. A call
 * that cannot start within its max wait is cancelled and answered 529 (Anthropic) / 503 (OpenAI)
 * with `retry-after`, which the SDK does not retry (the max wait bounds the client's whole wait); a provider's 4xx or spend cap comes back as the provider sent it (its status
 * and error body, so the SDK raises the same error as from the provider), not retried. A retry of
 * a 529 under the same `headroom-idempotency-key` runs the job again. A job clients share waits
 * for the latest deadline among them, while each hears its own.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '@headroom/producer-sdk';
import { laneKeys } from '@headroom/queue';
import { startSimulator, type FaultSpec, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { GATEWAY_KEYS, GPT, HAIKU, PROVIDER_KEY, SIM_MODELS, SONNET, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';

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

  it('cancels a call that cannot start within headroom-max-wait-ms and answers 529 (Anthropic) / 503 (OpenAI) with retry-after, which the SDK does not retry', async () => {
    const admitted = sim.stats().admissions.length;
    const busy = fleet.anthropic().messages.create(ask('busy'), HIGH);
    // The one slot taken for the simulator's 600 ms: a 50 ms wait cannot end in a start, however
    // slowly this machine enqueues.
    await until('the busy call to start', async () => sim.stats().admissions.length > admitted);
    const headers = { 'content-type': 'application/json', 'headroom-max-wait-ms': '50', 'headroom-priority': 'low' };
    // The SDK with its retries on: a retry after retry-after (1 s) would find the slot free again
    // and be answered, waiting past the 50 ms the client allowed.
    const { client, answers } = retryingClient(2);
    const [a, o, sdk] = await Promise.all([
      fetch(`${fleet.gateway.url}/v1/messages`, { method: 'POST', headers: { ...headers, 'anthropic-version': '2023-06-01', 'x-api-key': GATEWAY_KEYS.app }, body: JSON.stringify(ask('late', HAIKU)) }),
      fetch(`${fleet.gateway.url}/v1/chat/completions`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${GATEWAY_KEYS.app}` }, body: JSON.stringify({ model: GPT, max_completion_tokens: 16, messages: [{ role: 'user', content: 'late' }] }) }),
      client.messages.create(ask('late, through the SDK', HAIKU), { headers: { 'headroom-max-wait-ms': '50', 'headroom-priority': 'low' } }).then(() => undefined, (e: unknown) => e),
    ]);
    expect(sdk).toBeInstanceOf(Anthropic.OverloadedError);
    expect((sdk as InstanceType<typeof Anthropic.APIError>).status).toBe(529);
    expect(answers.map((x) => x.status)).toEqual([529]);
    expect(a.status).toBe(529);
    expect(await a.json()).toMatchObject({ type: 'error', error: { type: 'overloaded_error', message: expect.stringContaining('did not start within 50 ms') } });
    expect(o.status).toBe(503);
    expect(await o.json()).toMatchObject({ error: { type: 'server_error', message: expect.stringContaining('did not start within 50 ms') } });
    for (const r of [a, o]) {
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(r.headers.get('x-should-retry')).toBe('false');
    }
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
    // Of each pair, the one that joined the other's job says so (its usage is that job's, shared).
    const joinedOf = (...answers: Response[]) => answers.map((a) => a.headers.get('headroom-joined')).sort();
    expect(joinedOf(patientPlain, hastyPlain)).toEqual([null, 'true']);
    expect(joinedOf(patientStream, hastyStream)).toEqual([null, 'true']);
    expect(((await patientPlain.json()) as { content: unknown[] }).content.length).toBeGreaterThan(0);
    expect(patientStream.status).toBe(200);
    const events = await patientStream.text();
    expect(events).toMatch(/"finish_reason":"(stop|length)"/);
    expect(events.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(admitted(HAIKU) - before.haiku).toBe(1);
    expect(admitted(GPT) - before.gpt).toBe(1);
    await Promise.all(busy);
  });

  it('runs a shared job for the client that joined it with a later deadline, though its first caller\'s deadline passed', async () => {
    // The first caller enqueues with a 300 ms deadline and does not wait (so never withdraws); a
    // client joins through the gateway with the default 60 s. Before, the worker applied the first
    // caller's deadline to the job, and the client that would wait got 529 DEADLINE_EXCEEDED.
    const producer = new Producer({ redis: redis.url, prefix: fleet.prefix });
    const hold = new AbortController();
    sim.setPace({ streamTokenMs: 60_000 });
    try {
      // A CRITICAL stream holds the one slot until the test lets it go.
      const busy = fleet.anthropic().messages.stream({ model: SONNET, max_tokens: 400, messages: [{ role: 'user', content: 'Hold the slot.' }] }, { signal: hold.signal, headers: { 'headroom-priority': 'critical' } });
      await busy.withResponse();
      const body = ask('asked first with a short deadline', HAIKU);
      // The client's key is bound to tenant acme: its calls share jobs with acme's, and no one else's.
      const first = await producer.enqueue({ priority: 'HIGH', provider: 'anthropic', tenant: 'acme', coalesce: true, maxWaitMs: 300, request: body });
      const joined = fetch(`${fleet.gateway.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': GATEWAY_KEYS.tenant, 'headroom-priority': 'high', 'headroom-coalesce': 'true' },
        body: JSON.stringify(body),
      });
      const jobKey = `${laneKeys(fleet.prefix, 'high').jobKeyPrefix}${first.id}`;
      await until('the client to join the job', async () => (await admin.hget(jobKey, 'hrJoins')) === '1');
      const enqueuedAt = Number(await admin.hget(jobKey, 'timestamp'));
      await until("the first caller's deadline to pass", async () => Date.now() > enqueuedAt + 300);
      const before = sim.stats().admissions.filter((x) => x.model === HAIKU).length;
      hold.abort();
      await expect(busy.finalMessage()).rejects.toThrow();
      const res = await joined;
      expect(res.status).toBe(200);
      expect(res.headers.get('headroom-job-id')).toBe(first.id);
      expect(((await res.json()) as { content: unknown[] }).content.length).toBeGreaterThan(0);
      expect(sim.stats().admissions.filter((x) => x.model === HAIKU).length - before).toBe(1);
    } finally {
      sim.setPace({ streamTokenMs: null });
      await producer.close();
    }
  });

  it("tells a caller that joined a job its own wait in headroom-wait-ms: from its arrival to the call's start, 0 when the call had started", async () => {
    const hold = new AbortController();
    sim.setPace({ streamTokenMs: 60_000 });
    const calls: AbortController[] = [];
    const post = (body: string) => {
      const leave = new AbortController();
      calls.push(leave);
      return fetch(`${fleet.gateway.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': GATEWAY_KEYS.app, 'headroom-priority': 'high', 'headroom-coalesce': 'true' },
        body,
        signal: leave.signal,
      });
    };
    const waitOf = (res: Response) => Number(res.headers.get('headroom-wait-ms'));
    try {
      // A CRITICAL stream holds the one slot until the test lets it go.
      const busy = fleet.anthropic().messages.stream({ model: SONNET, max_tokens: 400, messages: [{ role: 'user', content: 'Hold the slot.' }] }, { signal: hold.signal, headers: { 'headroom-priority': 'critical' } });
      await busy.withResponse();
      const body = JSON.stringify({ ...ask('who waited how long', HAIKU), stream: true });
      const first = post(body);
      const high = laneKeys(fleet.prefix, 'high');
      const jobs = async () => [...(await admin.lrange(high.wait, 0, -1)), ...(await admin.zrange(high.prioritized, '0', '-1'))];
      await until('the first call to reach the lane', async () => (await jobs()).length === 1);
      await new Promise((r) => setTimeout(r, 400));
      const laterSent = Date.now();
      const later = post(body);
      const [id] = await jobs();
      await until('the later call to join the job', async () => (await admin.hget(`${high.jobKeyPrefix}${id}`, 'hrJoins')) === '1');
      hold.abort();
      await expect(busy.finalMessage()).rejects.toThrow();
      const [firstRes, laterRes] = await Promise.all([first, later]);
      expect([firstRes.status, laterRes.status, laterRes.headers.get('headroom-joined')]).toEqual([200, 200, 'true']);
      // The job's wait is the first caller's, from its enqueue; the call started at the enqueue
      // plus that wait, after the later caller was sent (and so arrived): the later one's wait is
      // at most the time from its sending to that start (1 ms for the headers' rounding).
      const enqueuedAt = Number(await admin.hget(`${high.jobKeyPrefix}${id}`, 'timestamp'));
      const callStarted = enqueuedAt + waitOf(firstRes);
      expect(callStarted).toBeGreaterThanOrEqual(laterSent - 1);
      expect(waitOf(laterRes)).toBeLessThanOrEqual(callStarted - laterSent + 1);
      // The job was in the lane 400 ms before the later call was sent: 400 ms less than its wait.
      expect(waitOf(laterRes)).toBeLessThanOrEqual(waitOf(firstRes) - 400 + 1);
      // One joining after the call started waited for nothing.
      const late = await post(body);
      expect([late.status, late.headers.get('headroom-job-id'), late.headers.get('headroom-joined'), late.headers.get('headroom-wait-ms')]).toEqual([200, firstRes.headers.get('headroom-job-id'), 'true', '0']);
    } finally {
      for (const leave of calls) leave.abort();
      hold.abort();
      sim.setPace({ streamTokenMs: null });
    }
  });

  it('coalesces the calls of one client key without a tenant, never two such keys: as their idempotency keys, each key is its own party', async () => {
    const hold = new AbortController();
    sim.setPace({ streamTokenMs: 60_000 });
    try {
      // A CRITICAL stream holds the one slot until the test lets it go, so the three calls meet in the lane.
      const busy = fleet.anthropic().messages.stream({ model: SONNET, max_tokens: 400, messages: [{ role: 'user', content: 'Hold the slot.' }] }, { signal: hold.signal, headers: { 'headroom-priority': 'critical' } });
      await busy.withResponse();
      const before = sim.stats().admissions.filter((x) => x.model === HAIKU).length;
      const body = JSON.stringify(ask('the same question from two clients', HAIKU));
      const post = (key: string) =>
        fetch(`${fleet.gateway.url}/v1/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': key, 'headroom-priority': 'normal', 'headroom-coalesce': 'true' },
          body,
        });
      const calls = [post(GATEWAY_KEYS.app), post(GATEWAY_KEYS.capped), post(GATEWAY_KEYS.app)];
      // Each call is in the lane as a job of its own or as a join of one, however they were grouped.
      const normal = laneKeys(fleet.prefix, 'normal');
      await until('the three calls to reach the lane', async () => {
        const ids = [...(await admin.lrange(normal.wait, 0, -1)), ...(await admin.zrange(normal.prioritized, '0', '-1'))];
        const joins = await Promise.all(ids.map(async (id) => Number((await admin.hget(`${normal.jobKeyPrefix}${id}`, 'hrJoins')) ?? 0)));
        return ids.length + joins.reduce((a, b) => a + b, 0) === 3;
      });
      hold.abort();
      await expect(busy.finalMessage()).rejects.toThrow();
      const [app, capped, appAgain] = await Promise.all(calls);
      for (const res of [app, capped, appAgain]) expect(res?.status).toBe(200);
      expect(appAgain?.headers.get('headroom-job-id')).toBe(app?.headers.get('headroom-job-id'));
      expect(capped?.headers.get('headroom-job-id')).not.toBe(app?.headers.get('headroom-job-id'));
      expect(sim.stats().admissions.filter((x) => x.model === HAIKU).length - before).toBe(2);
    } finally {
      sim.setPace({ streamTokenMs: null });
    }
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

  /**
   * What code catching an SDK's error branches on: its class, status, and the provider's fields
   * (Anthropic's body, type, `details.error_code`; OpenAI's `error` object, type, code, param).
   */
  const anthropicView = (e: unknown) => {
    const err = e as InstanceType<typeof Anthropic.APIError>;
    // Anthropic's error body names its call (`request_id`, the `request-id` header's): each call's
    // own, so compared as the header's, and read past where the SDK quotes the body.
    const body = err.error as { request_id?: unknown } | undefined;
    expect(body?.request_id).toBe(err.requestID);
    const unnamed = (text: string) => (err.requestID ? text.replaceAll(err.requestID, '<request id>') : text);
    return { class: err.constructor.name, status: err.status, message: unnamed(err.message), error: { ...body, request_id: '<request id>' }, type: err.type, errorCode: err.errorCode, details: err.details };
  };
  const openaiView = (e: unknown) => {
    const err = e as InstanceType<typeof OpenAI.APIError>;
    return { class: err.constructor.name, status: err.status, message: err.message, error: err.error, type: err.type, code: err.code, param: err.param };
  };
  const caught = (call: Promise<unknown>) => call.then(() => expect.unreachable('expected the call to be refused'), (e: unknown) => e);

  it("answers a provider's refusal or spend cap with the provider's own error body: the SDK's error equals the one it gets from the provider", async () => {
    const direct = {
      anthropic: new Anthropic({ apiKey: PROVIDER_KEY, baseURL: sim.url, maxRetries: 0 }),
      openai: new OpenAI({ apiKey: PROVIDER_KEY, baseURL: `${sim.url}/v1`, maxRetries: 0 }),
    };
    const gateway = { anthropic: fleet.anthropic(GATEWAY_KEYS.app, { maxRetries: 0 }), openai: fleet.openai(GATEWAY_KEYS.app, { maxRetries: 0 }) };
    type Clients = typeof direct;
    // A spend cap is tried twice by the worker (the cap may just have lifted): one fault for the
    // direct call, then what the gateway's job meets.
    const cases: { name: string; sdkClass: string; code: string; fault?: FaultSpec; faults?: number; call: (c: Clients) => Promise<unknown>; view: (e: unknown) => object }[] = [
      {
        // No fault: the simulator refuses a max_output_tokens under OpenAI's floor, as OpenAI does.
        name: 'OpenAI 400 with param and code',
        sdkClass: 'BadRequestError',
        code: 'PROVIDER_REJECTED',
        call: (c) => c.openai.responses.create({ model: GPT, input: 'too short an answer', max_output_tokens: 8 }),
        view: openaiView,
      },
      {
        name: 'OpenAI 403 model_not_found',
        sdkClass: 'PermissionDeniedError',
        code: 'PROVIDER_REJECTED',
        fault: { model: GPT, status: 403 },
        call: (c) => c.openai.chat.completions.create({ model: GPT, max_completion_tokens: 16, messages: [{ role: 'user', content: 'not allowed' }] }),
        view: openaiView,
      },
      {
        name: 'OpenAI 403 model_not_found, streamed',
        sdkClass: 'PermissionDeniedError',
        code: 'PROVIDER_REJECTED',
        fault: { model: GPT, status: 403 },
        call: (c) => c.openai.chat.completions.create({ model: GPT, max_completion_tokens: 16, stream: true, messages: [{ role: 'user', content: 'not allowed, streamed' }] }),
        view: openaiView,
      },
      {
        name: 'OpenAI 429 insufficient_quota',
        sdkClass: 'RateLimitError',
        code: 'SPEND_CAP',
        fault: { model: GPT, spendCap: true },
        faults: 3,
        call: (c) => c.openai.chat.completions.create({ model: GPT, max_completion_tokens: 16, messages: [{ role: 'user', content: 'over quota' }] }),
        view: openaiView,
      },
      {
        name: 'Anthropic 403',
        sdkClass: 'PermissionDeniedError',
        code: 'PROVIDER_REJECTED',
        fault: { model: SONNET, status: 403 },
        call: (c) => c.anthropic.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'not allowed' }] }),
        view: anthropicView,
      },
      {
        // 429 with details.error_code: enforced_spend_limit_reached, which the SDK raises as its own class.
        name: 'Anthropic spend limit',
        sdkClass: 'EnforcedSpendLimitReachedError',
        code: 'SPEND_CAP',
        fault: { model: SONNET, spendCap: true },
        faults: 3,
        call: (c) => c.anthropic.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'over the spend limit' }] }),
        view: anthropicView,
      },
      {
        name: 'Anthropic 402 billing_error',
        sdkClass: 'PaymentRequiredError',
        code: 'SPEND_CAP',
        fault: { model: SONNET, billing: true },
        faults: 3,
        call: (c) => c.anthropic.messages.create({ model: SONNET, max_tokens: 16, messages: [{ role: 'user', content: 'no credit' }] }),
        view: anthropicView,
      },
    ];
    for (const { name, sdkClass, code, fault, faults = 2, call, view } of cases) {
      if (fault) sim.injectFaults({ ...fault, count: faults });
      const fromProvider = await caught(call(direct));
      // The SDK's own class for the case (a spend limit's, a billing error's), not a generic one.
      expect((fromProvider as Error).constructor.name, name).toBe(sdkClass);
      const fromGateway = await caught(call(gateway));
      expect(view(fromGateway), name).toEqual(view(fromProvider));
      const { headers, requestID } = fromGateway as InstanceType<typeof OpenAI.APIError>;
      expect(headers?.get('headroom-error-code'), name).toBe(code);
      expect(headers?.get('headroom-job-id'), name).toBeTruthy();
      expect(headers?.get('x-should-retry'), name).toBe('false');
      // The provider's id for the call behind the answer, as its SDK reads it.
      expect(requestID, name).toMatch(/^req_/);
      expect(requestID, name).not.toBe((fromProvider as InstanceType<typeof OpenAI.APIError>).requestID);
      sim.clearFaults();
    }
  });
});
