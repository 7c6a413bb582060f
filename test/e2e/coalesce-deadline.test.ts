/**
 * A coalesced job waits for the latest start deadline any of its callers still waiting wants, not
 * for one of a caller that left (docs/producer.md, "Coalescing"). A join with a later deadline
 * moves the job's later; that caller's leaving moved it nowhere, so the job waited in its lane for
 * nobody, and was then run (a provider call paid for) past what any caller left wanted: here the
 * caller left waited on past its own deadline for an answer made a minute later, since a job a
 * worker had taken back is left to its worker at the caller's deadline (docs/producer.md, "Start
 * deadlines"). Now the leaving caller names its deadline (add-9.lua's mark) and cancel-3.lua moves
 * the job's back to the latest of those left, in the call that gives back its share, so a join at
 * the same moment cannot be lost between two writes.
 *
 * The pool serves one request a minute: the job waits for it, taken and put back by its worker,
 * which ends it DEADLINE_EXCEEDED, without a call, once the wait passes the deadline it reads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureCode } from '@headroom/queue';
import { JobFailedError, type Producer } from '@headroom/producer-sdk';
import { SONNET, startGatewayStack, type GatewayStack } from '../support/gateway-fleet.js';
import { until } from '../support/probes.js';

let stack: GatewayStack;
let producer: Producer;

beforeAll(async () => {
  stack = await startGatewayStack({ latencyMs: 5 }, () => ({
    // The fleet's bucket: one request a minute (the simulator's own limits are far above it).
    models: { [SONNET]: { provider: 'anthropic', limits: { rpm: 1, itpm: 40_000_000, otpm: 10_000_000 } } },
  }));
  producer = stack.producer;
});
afterAll(async () => {
  await stack?.close();
});

const ask = (content: string) => ({ provider: 'anthropic' as const, priority: 'CRITICAL' as const, request: { model: SONNET, max_tokens: 16, messages: [{ role: 'user' as const, content }] } });

describe("a coalesced job's deadline when its latest caller leaves", () => {
  it("moves back to the deadline of the caller left: the job ends DEADLINE_EXCEEDED without a call, not run a minute later past that caller's deadline", async () => {
    // The pool's one request of this minute goes to another job.
    await producer.run(ask('the minute goes to this one'), { timeoutMs: 60_000 });
    const calls = stack.sim.stats().admissions.length;

    const shared = { ...ask('the same question'), coalesce: true };
    // The latest caller first, so the job is taken and put back under its deadline (ten minutes).
    const latest = await producer.stream({ ...shared, maxWaitMs: 600_000 });
    const job = latest.id;
    await until(async () => (await producer.getJob(job))?.startedAt !== undefined, 30_000, 'the job taken by its worker');
    const left = await producer.stream({ ...shared, maxWaitMs: 5_000 });
    expect(left.id).toBe(job);
    await latest.cancel();

    // The caller left hears DEADLINE_EXCEEDED (its own, or the job's, which is now its own).
    const outcome = await left.result().then(
      () => 'completed',
      (err: unknown) => (err instanceof JobFailedError ? err.failureCode : String(err)),
    );
    expect(outcome).toBe(FailureCode.DEADLINE_EXCEEDED);
    await until(async () => (await producer.getJob(job))?.state === 'failed', 30_000, 'the job ended');
    expect((await producer.getJob(job))?.failure?.code).toBe(FailureCode.DEADLINE_EXCEEDED);
    expect(stack.sim.stats().admissions.length).toBe(calls);
  }, 180_000);
});
