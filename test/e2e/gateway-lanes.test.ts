/**
 * Lanes through the gateway: under saturation a `headroom-priority: critical` request starts
 * ahead of a LOW backlog; a key whose highest lane is NORMAL asking for CRITICAL runs in NORMAL;
 * a key's tenant is its own, whatever a header says.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '@headroom/producer-sdk';
import { laneKeys } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { GATEWAY_KEYS, HAIKU, SIM_MODELS, SONNET, startGatewayFleet, type GatewayFleet } from '../support/gateway-fleet.js';

let redis: EmbeddedRedis;
let admin: Redis;
let sim: Simulator;
let fleet: GatewayFleet;
let producer: Producer;

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
  // Every call takes 80 ms and the fleet runs one at a time: a LOW backlog stays a backlog.
  sim = await startSimulator({ latencyMs: 80, models: SIM_MODELS });
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

const ask = (model: string, content: string) => ({ model, max_tokens: 16, messages: [{ role: 'user' as const, content }] });

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** LOW's waiting jobs: its wait list and its prioritized set (where a fair lane keeps them). */
const waitingInLow = async () => (await admin.llen(laneKeys(fleet.prefix, 'low').wait)) + (await admin.zcard(laneKeys(fleet.prefix, 'low').prioritized));

describe('lanes through the gateway', () => {
  it('starts a critical request ahead of a LOW backlog', async () => {
    const client = fleet.anthropic();
    const low = Array.from({ length: 12 }, (_, i) => client.messages.create(ask(SONNET, `background ${i}`), { headers: { 'headroom-priority': 'low' } }));
    // The backlog is queued (one call runs at a time) before the critical request arrives.
    await until('a LOW backlog', async () => (await waitingInLow()) >= 8);
    const before = sim.stats().admissions.length;
    const critical = await client.messages.create(ask(HAIKU, 'urgent'), { headers: { 'headroom-priority': 'critical' } }).withResponse();
    expect(critical.response.headers.get('headroom-lane')).toBe('critical');
    const order = sim.stats().admissions.slice(before).map((a) => a.model);
    // At most the LOW call in flight and one being taken when it arrived went before it.
    expect(order.indexOf(HAIKU)).toBeLessThanOrEqual(1);
    const lowStillWaiting = await waitingInLow();
    expect(lowStillWaiting).toBeGreaterThanOrEqual(5);
    await Promise.all(low);
  });

  it("runs a key's request no higher than its highest lane, and in its default lane without a header", async () => {
    const capped = fleet.anthropic(GATEWAY_KEYS.capped);
    const asked = await capped.messages.create(ask(SONNET, 'let me jump the queue'), { headers: { 'headroom-priority': 'critical' } }).withResponse();
    expect(asked.response.headers.get('headroom-lane')).toBe('normal');
    expect(asked.response.headers.get('headroom-job-id')).toMatch(/^normal\./);
    const unasked = await capped.messages.create(ask(SONNET, 'whenever')).withResponse();
    expect(unasked.response.headers.get('headroom-lane')).toBe('low');
    const lower = await capped.messages.create(ask(SONNET, 'no rush'), { headers: { 'headroom-priority': 'low' } }).withResponse();
    expect(lower.response.headers.get('headroom-lane')).toBe('low');
  });

  it("keeps a key's tenant whatever headroom-tenant says, and takes the header from a key without one", async () => {
    const bound = await fleet.anthropic(GATEWAY_KEYS.tenant).messages.create(ask(SONNET, 'tenant?'), { headers: { 'headroom-tenant': 'someone-else' } }).withResponse();
    expect((await producer.getJob(bound.response.headers.get('headroom-job-id')!))?.job.tenant).toBe('acme');
    // Not read, so not refused either: a malformed one from a client that always sends it.
    const malformed = await fleet.anthropic(GATEWAY_KEYS.tenant).messages.create(ask(SONNET, 'tenant?'), { headers: { 'headroom-tenant': 'acme corp' } }).withResponse();
    expect((await producer.getJob(malformed.response.headers.get('headroom-job-id')!))?.job.tenant).toBe('acme');
    const free = await fleet.anthropic().messages.create(ask(SONNET, 'tenant?'), { headers: { 'headroom-tenant': 'globex' } }).withResponse();
    expect((await producer.getJob(free.response.headers.get('headroom-job-id')!))?.job.tenant).toBe('globex');
  });
});
