/**
 * Overload behaviour end to end: a brownout sheds LOW and nothing else, a runaway tenant cannot
 * starve its neighbours, a tenant at its quota in one pool is still served in another and from
 * its calls' refunds, and identical coalesced requests cost one provider call.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobFailedError, Producer, ShedError, type JobHandle, type LlmJobInput, type LlmResult, type Priority } from '@headroom/producer-sdk';
import { laneKeys, parseConfig, publishFleetSettings, type HeadroomConfigInput, createLogger, readFleetStats } from '@headroom/queue';
import { startSimulator, type Simulator } from '@headroom/simulator';
import { startWorker, type PressureAdjust } from '@headroom/worker';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { until } from '../support/probes.js';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
const ENV = { PRESSURE_TEST_KEY: 'sk-pressure' };

let redis: EmbeddedRedis;
let sim: Simulator;
let admin: Redis;
const running: { close(): Promise<unknown> }[] = [];

beforeAll(async () => {
  redis = await startEmbeddedRedis();
  admin = new Redis(redis.url);
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.close()));
  await sim?.close();
});
afterAll(async () => {
  admin.disconnect();
  await redis.stop();
});

async function fleet(simOpts: Parameters<typeof startSimulator>[0], config: Omit<HeadroomConfigInput, 'redis' | 'providers'>, workers = 2, pressure?: PressureAdjust) {
  sim = await startSimulator(simOpts);
  const prefix = `p${randomUUID().slice(0, 8)}`;
  const cfg = parseConfig({ redis: { prefix }, providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'PRESSURE_TEST_KEY' } }, ...config });
  for (let i = 0; i < workers; i++) running.push(await startWorker({ config: cfg, redisUrl: redis.url, env: ENV, logger: createLogger({ level: 'silent' }), ...(pressure ? { pressure } : {}) }));
  const producer = new Producer({ redis: redis.url, prefix });
  running.push(producer);
  return { producer, prefix };
}

const job = (priority: Priority, text: string, extra: Partial<LlmJobInput> = {}): LlmJobInput =>
  ({ priority, provider: 'anthropic', request: { model: SONNET, max_tokens: 32, messages: [{ role: 'user', content: text }] }, ...extra }) as LlmJobInput;

describe('pressure and shedding', () => {
  it('sheds LOW in a brownout while CRITICAL and HIGH all complete, and counts every shed', async () => {
    const limits = { rpm: 120, itpm: 200_000, otpm: 50_000 };
    // The pools' pressure is the test's to set: a busy machine enqueues and serves the backlog
    // more slowly, so pressure left to build from load comes early (the LOW jobs meant to be
    // accepted are refused) or late. Everything downstream of it (admission refusals, waiting LOW
    // jobs shed or moved to the batch lane, CRITICAL and HIGH untouched, the counters) is the
    // fleet's own doing.
    let brownout = false;
    const { producer, prefix } = await fleet(
      { models: { [SONNET]: { provider: 'anthropic', limits }, [HAIKU]: { provider: 'anthropic', limits } }, latencyMs: 20, batchCompletionMs: 1_000 },
      {
        models: { [SONNET]: { provider: 'anthropic', limits, fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic', limits } },
        lanes: { low: { maxWaitMs: 2_000 } },
        batch: { maxWaitMs: 1_000, pollIntervalMs: 300 },
        shedding: { lowAt: 0.85, horizonMs: 5_000 },
        retry: { maxAttempts: 10, baseDelayMs: 100, maxDelayMs: 2_000 },
      },
      2,
      // None before the brownout (a slow machine would otherwise build some while the backlog is
      // still being enqueued), full from it on.
      (_pool, computed) => ({ ...computed, value: brownout ? 1 : 0 }),
    );
    const accepted: { priority: Priority; handle: JobHandle; onShed?: string }[] = [];
    let refusedAtEnqueue = 0;
    const offer = async (priority: Priority, n: number, tag: string, extra: Partial<LlmJobInput> = {}) => {
      for (let i = 0; i < n; i++) {
        try {
          accepted.push({ priority, ...extra, handle: await producer.enqueue(job(priority, `${tag} ${i}`, priority === 'LOW' ? extra : { fallback: [HAIKU] })) } as (typeof accepted)[number]);
        } catch (err) {
          if (!(err instanceof ShedError)) throw err;
          expect(priority).toBe('LOW');
          refusedAtEnqueue++;
        }
      }
    };
    // A minute of burst plus a long backlog: the bucket drains and the backlog outlasts the horizon.
    await offer('LOW', 230, 'low');
    // These would rather wait for the batch API than be dropped.
    await offer('LOW', 20, 'low-to-batch', { onShed: 'batch' });
    await offer('HIGH', 20, 'high');
    await offer('CRITICAL', 10, 'crit');
    await new Promise((r) => setTimeout(r, 3_000));
    // Brownout: the provider halves its limits and throws 529s, and the pools' pressure is full.
    // Every LOW job enqueued above has waited past its 2 s max wait by now; the bucket (120 rpm,
    // LOW drawing down to 40% of it) can have granted at most ~80 of the 250, so most still wait.
    sim.scaleLimits(0.5);
    sim.injectFaults({ model: SONNET, status: 529, count: 5 });
    brownout = true;
    // The workers act on it from their next pressure tick (each second).
    const sheddingKey = laneKeys(prefix, 'low').shedding;
    await until(async () => (await admin.hlen(sheddingKey)) > 0, 10_000, 'the shedding entry for LOW');
    // What admission read, for the message should none of the late LOW jobs be refused.
    const entryBefore = { entries: await admin.hgetall(sheddingKey), redisTime: await admin.time() };
    await offer('LOW', 50, 'low-late');
    // Refused SHED at enqueue, these go to the batch lane as if shed a moment later.
    await offer('LOW', 5, 'low-late-to-batch', { onShed: 'batch' });
    const entryAfter = { entries: await admin.hgetall(sheddingKey), redisTime: await admin.time() };
    await offer('HIGH', 10, 'high-late');
    await offer('CRITICAL', 5, 'crit-late');

    const settled = await Promise.allSettled(accepted.map((a) => a.handle.result({ timeoutMs: 120_000 })));
    const byPriority = (p: Priority) => settled.filter((_, i) => accepted[i]!.priority === p);
    for (const p of ['CRITICAL', 'HIGH'] as const) {
      const rejected = byPriority(p).filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      expect(rejected.map((r) => String(r.reason)), `${p} jobs must all complete`).toEqual([]);
    }
    const toBatch = settled.filter((_, i) => accepted[i]!.onShed === 'batch');
    expect(toBatch.length, 'LOW jobs with onShed: batch accepted').toBeGreaterThan(0);
    // Shed with onShed: 'batch', they still got their answer, from the batch API at half price.
    expect(toBatch.every((s) => s.status === 'fulfilled')).toBe(true);
    expect(toBatch.some((s) => s.status === 'fulfilled' && s.value.cost.batch)).toBe(true);
    const atEnqueue = settled.filter((_, i) => accepted[i]!.onShed === 'batch' && accepted[i]!.handle.lane === 'batch');
    expect(atEnqueue.length, "LOW jobs with onShed: 'batch' taken into the batch lane at enqueue").toBeGreaterThan(0);
    expect(atEnqueue.every((s) => s.status === 'fulfilled' && s.value.cost.batch)).toBe(true);
    const low = byPriority('LOW');
    // A waiting LOW job that is shed rejects result() with the same code as a refusal at enqueue.
    const shed = low.filter((s) => s.status === 'rejected' && s.reason instanceof ShedError && s.reason.jobId !== undefined);
    const otherFailures = low.filter((s) => s.status === 'rejected' && !shed.includes(s));
    expect(otherFailures.map((s) => String((s as PromiseRejectedResult).reason))).toEqual([]);
    expect(refusedAtEnqueue, `LOW jobs refused at enqueue in the brownout (shedding entries ${JSON.stringify({ entryBefore, entryAfter })})`).toBeGreaterThan(0);
    expect(shed.length, 'waiting LOW jobs shed').toBeGreaterThan(0);
    // Every accepted job ended: completed or failed with a reason (allSettled above had no timeouts).
    expect(settled.every((s) => s.status === 'fulfilled' || s.reason instanceof JobFailedError || s.reason instanceof ShedError)).toBe(true);

    // The fleet's shed counter matches the jobs that ended as shed.
    await new Promise((r) => setTimeout(r, 1_500));
    const stats = await readFleetStats(admin, prefix, 10);
    // Workers count the waiting jobs they shed or moved; admission counts every refusal SHED at
    // enqueue (those moved to the batch lane at enqueue were refused first).
    const movedToBatch = toBatch.filter((s) => s.status === 'fulfilled' && s.value.cost.batch && !atEnqueue.includes(s)).length;
    expect(stats.lanes.low?.shed ?? 0).toBe(shed.length + movedToBatch + refusedAtEnqueue + atEnqueue.length);
    expect(stats.lanes.critical?.shed ?? 0).toBe(0);
    expect(stats.lanes.high?.shed ?? 0).toBe(0);
  });

  it('keeps a runaway tenant from starving another tenant on the same lane', async () => {
    const limits = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
    const { producer } = await fleet(
      { models: { [SONNET]: { provider: 'anthropic', limits } }, latencyMs: 30 },
      // Tenant A may spend about 20 jobs' worth of tokens a minute.
      { models: { [SONNET]: { provider: 'anthropic', limits } }, tenants: { overrides: { a: { tpm: 2_000 } } } },
    );
    const run = (tenant: string, n: number, tag: string) =>
      Promise.all(Array.from({ length: n }, (_, i) => producer.enqueue(job('NORMAL', `${tag} ${i}`, { tenant }))));
    const waitOf = (r: LlmResult) => r.timings.waitMs;

    const idle = await Promise.all((await run('b', 10, 'b-idle')).map((h) => h.result({ timeoutMs: 30_000 })));
    // A offers 10x its quota at once; B arrives behind all of it in the same FIFO lane.
    const flood = await run('a', 200, 'a-flood');
    const contended = await Promise.all((await run('b', 10, 'b-busy')).map((h) => h.result({ timeoutMs: 60_000 })));
    const aStates = await Promise.all(flood.map((h) => producer.getJob(h.id)));
    const aDone = aStates.filter((s) => s?.state === 'completed').length;

    const p95 = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.ceil(xs.length * 0.95) - 1]!;
    console.log(`tenant B p95 wait: idle A ${p95(idle.map(waitOf))} ms, runaway A ${p95(contended.map(waitOf))} ms; A completed ${aDone}/200 meanwhile`);
    // B did not wait behind A's backlog: A is held to its quota (its over-quota jobs parked in the
    // delayed set), so B's ten were all done while most of A's 200 were not. Counted in jobs, not
    // in seconds, so a slow machine cannot tip it.
    expect(aDone).toBeLessThan(100);
  });

  it("holds a tenant at its quota in one pool only, serves it from its calls' refunds within a second, and fails at once a job its quota never serves", async () => {
    const limits = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
    const models = { [SONNET]: { provider: 'anthropic' as const, limits }, [HAIKU]: { provider: 'anthropic' as const, limits } };
    // Calls last long enough for the tenant's second large job to ask while the first is in
    // flight; each answers 10 tokens, so a call hands back nearly all of its output reservation.
    const { producer } = await fleet({ models, latencyMs: 2_000, outputTokens: 10 }, { models, tenants: { overrides: { t: { tpm: 2_000 } } } }, 1);
    const ask = (model: string, maxTokens: number, extra: Partial<LlmJobInput> = {}) =>
      producer.enqueue({ priority: 'NORMAL', provider: 'anthropic', tenant: 't', request: { model, max_tokens: maxTokens, messages: [{ role: 'user', content: 'x' }] }, ...extra } as LlmJobInput);

    // NORMAL may hold 1,600 of the tenant's 2,000 in a pool: one 1,500-token job fits, the other
    // is told to wait about 43 s for the refill alone.
    const big = [await ask(HAIKU, 1_500), await ask(HAIKU, 1_500)];
    let parked = -1;
    await until(async () => {
      const states = await Promise.all(big.map((h) => producer.getJob(h.id)));
      parked = states.findIndex((s) => s?.state === 'delayed');
      return parked >= 0;
    }, 60_000, "the tenant's second large job parked");

    // Its job for another pool draws from its own, untouched bucket there; a job of 3,000 tokens
    // fails at once, naming prompt plus output. Before, the sonnet job was held for haiku's wait
    // (past its maxWaitMs: DEADLINE_EXCEEDED) and the huge one failed after it, "needs 16".
    const other = await ask(SONNET, 16, { maxWaitMs: 30_000 });
    const huge = await ask(HAIKU, 3_000);
    expect((await other.result({ timeoutMs: 120_000 })).model).toBe(SONNET);
    const hugeFailure = await huge.result({ timeoutMs: 120_000 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(hugeFailure).toBeInstanceOf(JobFailedError);
    expect((hugeFailure as JobFailedError).failure).toMatchObject({ code: 'NEVER_FITS', message: expect.stringMatching(/^claude-haiku-4-5 needs 30\d\d in tenant_tpm but lane normal may draw at most 1600 at once/) });

    // Once the first call settles, its refund serves the tenant within a second: a job allowed
    // 20 s of waiting completes (the bucket's wait was remembered for all of its 43 s before, and
    // the job failed DEADLINE_EXCEEDED), and so does the parked one.
    await big[1 - parked]!.result({ timeoutMs: 120_000 });
    const after = await ask(HAIKU, 16, { maxWaitMs: 20_000 });
    expect((await after.result({ timeoutMs: 120_000 })).model).toBe(HAIKU);
    expect((await big[parked]!.result({ timeoutMs: 120_000 })).attempts).toBe(1);
  });

  it("serves deadline jobs its tenant's refunds serve in time, rather than fail them on the wait counted from output still reserved", async () => {
    const limits = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
    const models = { [HAIKU]: { provider: 'anthropic' as const, limits } };
    // Each call answers 10 of its 1,000 reserved tokens. NORMAL may hold 2,400 of the tenant's
    // 3,000: two jobs fit at once, and the bucket tells the third about 12.6 s on the refill
    // alone, past its 6 s; the two calls in flight give nearly all of it back when they settle.
    const { producer } = await fleet({ models, latencyMs: 300, outputTokens: 10 }, { models, tenants: { overrides: { p: { tpm: 3_000 } } } }, 1);
    const handles = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        producer.enqueue({ priority: 'NORMAL', provider: 'anthropic', tenant: 'p', maxWaitMs: 6_000, request: { model: HAIKU, max_tokens: 1_000, messages: [{ role: 'user', content: `q ${i}` }] } } as LlmJobInput),
      ),
    );
    const settled = await Promise.allSettled(handles.map((h) => h.result({ timeoutMs: 60_000 })));
    const failures = settled.flatMap((s) => (s.status === 'rejected' ? [(s.reason as JobFailedError).failure?.code ?? String(s.reason)] : []));
    expect(failures).toEqual([]);
  });

  it('serves 50 identical coalesced requests with one provider call', async () => {
    const limits = { rpm: 1_000, itpm: 400_000, otpm: 100_000 };
    sim = await startSimulator({ models: { [SONNET]: { provider: 'anthropic', limits } }, latencyMs: 20 });
    const prefix = `c${randomUUID().slice(0, 8)}`;
    const producer = new Producer({ redis: redis.url, prefix });
    running.push(producer);
    const cfg = parseConfig({ redis: { prefix }, providers: { anthropic: { baseURL: sim.url, apiKeyEnv: 'PRESSURE_TEST_KEY' } }, models: { [SONNET]: { provider: 'anthropic', limits } } });
    // Enqueued before the worker starts: the settings a fleet that ran before left (admission refuses without them).
    await publishFleetSettings(admin, cfg);
    const same = job('HIGH', 'What is the capital of France?', { coalesce: true });
    const handles = await Promise.all(Array.from({ length: 50 }, () => producer.enqueue(same)));
    running.push(await startWorker({ config: cfg, redisUrl: redis.url, env: ENV, logger: createLogger({ level: 'silent' }) }));
    const results = await Promise.all(handles.map((h) => h.result({ timeoutMs: 20_000 })));
    expect(results).toHaveLength(50);
    expect(new Set(results.map((r) => JSON.stringify(r.response))).size).toBe(1);
    expect(sim.stats().models[SONNET]?.admitted).toBe(1);
  });

  it('lets a lane\'s jobs for an idle pool pass the jobs waiting on a busy one', async () => {
    // Sonnet's pool allows 12 requests a minute; Haiku's is idle. 30 Sonnet jobs go first, then 10
    // Haiku jobs, all NORMAL: the Haiku jobs must not queue behind Sonnet's quota.
    const busy = { rpm: 12, itpm: 200_000, otpm: 50_000 };
    const idle = { rpm: 6_000, itpm: 2_000_000, otpm: 400_000 };
    const { producer } = await fleet(
      { models: { [SONNET]: { provider: 'anthropic', limits: busy }, [HAIKU]: { provider: 'anthropic', limits: idle } }, latencyMs: 20 },
      {
        models: { [SONNET]: { provider: 'anthropic', pool: 'sonnet-4', limits: busy }, [HAIKU]: { provider: 'anthropic', pool: 'haiku-4', limits: idle } },
        // Few slots, so the Haiku jobs sit in the lane behind Sonnet's instead of all being taken at once.
        dispatch: { concurrency: 4 },
      },
      1,
    );
    const sonnet = await Promise.all(Array.from({ length: 30 }, (_, i) => producer.enqueue(job('NORMAL', `sonnet ${i}`))));
    const haiku = await Promise.all(
      Array.from({ length: 10 }, (_, i) => producer.enqueue(job('NORMAL', `haiku ${i}`, { request: { model: HAIKU, max_tokens: 32, messages: [{ role: 'user', content: `haiku ${i}` }] } }))),
    );
    const results = await Promise.all(haiku.map((h) => h.result({ timeoutMs: 20_000 })));
    expect(results.every((r) => r.model === HAIKU)).toBe(true);
    // Sonnet's bucket admits one request every 5 s after its first 12: most Sonnet jobs are still
    // waiting, behind which the Haiku jobs would have waited minutes.
    const finished = await Promise.all(sonnet.map(async (h) => (await producer.getJob(h.id))?.state === 'completed'));
    expect(finished.filter(Boolean).length).toBeLessThanOrEqual(15);
    expect(sim.stats().models[SONNET]?.refused429 ?? 0).toBe(0);
  });
});
