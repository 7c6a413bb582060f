import Anthropic, { type APIError } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Simulator, type SimulatorStats, startSimulator } from './index.js';

const SONNET = 'claude-sonnet-4-6';
const OPUS = 'claude-opus-4-6';
const ask = (model: string, content = 'hi') => ({ model, max_tokens: 50, messages: [{ role: 'user' as const, content }] });

describe('limits, pools and the /_sim controls', () => {
  let sim: Simulator;
  let client: Anthropic;

  beforeAll(async () => {
    sim = await startSimulator({
      latencyMs: 0,
      outputTokens: 10,
      models: {
        [SONNET]: { provider: 'anthropic', limits: { rpm: 4, itpm: 100_000, otpm: 100_000 } },
        [OPUS]: { provider: 'anthropic', limits: { rpm: 4, itpm: 100_000, otpm: 100_000 } },
        'claude-haiku-4-5': { provider: 'anthropic', limits: { rpm: 4, itpm: 100_000, otpm: 100_000 } },
      },
      pools: { 'claude-4-large': [SONNET, OPUS] },
    });
    client = new Anthropic({ apiKey: 'k', baseURL: sim.url, maxRetries: 0 });
  });
  beforeEach(() => sim.reset());
  afterAll(() => sim.close());

  const status = (promise: Promise<unknown>) =>
    promise.then(
      () => 200,
      (error: unknown) => (error instanceof Anthropic.APIError ? error.status : -1),
    );

  it('makes the models of a pool share one limit', async () => {
    const statuses = [];
    for (const model of [SONNET, OPUS, SONNET, OPUS, OPUS]) statuses.push(await status(client.messages.create(ask(model))));
    expect(statuses).toEqual([200, 200, 200, 200, 429]);
    expect(await status(client.messages.create(ask('claude-haiku-4-5')))).toBe(200);
    const admissions = sim.stats().admissions;
    expect(new Set(admissions.filter((a) => a.model !== 'claude-haiku-4-5').map((a) => a.pool))).toEqual(new Set(['claude-4-large']));
  });

  it('halves the limits in a brownout without forgetting what was just spent, and restores them', async () => {
    await client.messages.create(ask(SONNET));
    await client.messages.create(ask(SONNET));
    sim.scaleLimits(0.5); // capacity 2, 2 already spent
    const { error } = await client.messages.create(ask(SONNET)).then(() => ({ error: null }), (e: unknown) => ({ error: e as APIError }));
    expect(error?.status).toBe(429);
    expect(error?.headers?.get('anthropic-ratelimit-requests-limit')).toBe('2');
    sim.scaleLimits(1);
    expect(await status(client.messages.create(ask(SONNET)))).toBe(200);
    expect(sim.limits().models[SONNET]?.effective.rpm).toBe(4);
  });

  it('serves the same controls over HTTP', async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${sim.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

    expect((await post('/_sim/limits', { model: 'claude-haiku-4-5', limits: { rpm: 1, itpm: 1000, otpm: 1000 } })).status).toBe(200);
    expect(await status(client.messages.create(ask('claude-haiku-4-5')))).toBe(200);
    expect(await status(client.messages.create(ask('claude-haiku-4-5')))).toBe(429);

    const faulted = await post('/_sim/faults', { model: SONNET, status: 500, count: 1 });
    expect(((await faulted.json()) as { faults: unknown[] }).faults).toEqual([{ model: SONNET, status: 500, count: 1 }]);
    expect(await status(client.messages.create(ask(SONNET)))).toBe(500);
    expect(await status(client.messages.create(ask(SONNET)))).toBe(200);

    await post('/_sim/faults', { status: 529 });
    expect((await fetch(`${sim.url}/_sim/faults`, { method: 'DELETE' })).status).toBe(200);
    expect(await status(client.messages.create(ask(OPUS)))).toBe(200);

    expect((await post('/_sim/faults', { status: 418 })).status).toBe(400);
    expect((await post('/_sim/limits', { scale: 0.5 })).status).toBe(200);
    expect(sim.limits().scale).toBe(0.5);
    await post('/_sim/limits', { scale: 1 });

    const stats = (await (await fetch(`${sim.url}/_sim/stats`)).json()) as SimulatorStats;
    expect(stats.requestsByPath['POST /v1/messages']).toBe(5);
    expect(stats.models['claude-haiku-4-5']).toMatchObject({ admitted: 1, refused429: 1 });
    expect(stats.models[SONNET]?.faultsInjected).toEqual({ '500': 1 });
    expect(stats.admissions).toHaveLength(3);
    expect(stats.admissions[0]).toMatchObject({ model: 'claude-haiku-4-5', key: 'k', output: 10, done: true });

    expect((await post('/_sim/reset', {})).status).toBe(200);
    expect(sim.stats().admissions).toEqual([]);
    expect(await status(client.messages.create(ask('claude-haiku-4-5')))).toBe(200); // fresh buckets, limits kept
    expect(await status(client.messages.create(ask('claude-haiku-4-5')))).toBe(429);
  });

  it('keeps an admission log from which no window can be shown to exceed a limit', async () => {
    for (let i = 0; i < 6; i++) await status(client.messages.create(ask(SONNET, `q${i}`)));
    const { admissions } = sim.stats();
    expect(admissions).toHaveLength(4);
    const windowStart = admissions[0]?.t ?? 0;
    expect(admissions.filter((a) => a.t < windowStart + 60_000)).toHaveLength(4);
    for (const a of admissions) expect(a).toMatchObject({ model: SONNET, key: 'k', cacheRead: 0, done: true, output: 10 });
  });
});
