/**
 * A caller that joins a streamed job (a coalesced join, or a repeat of its idempotency key) just
 * as the job's last caller leaves must get a whole answer: docs/architecture.md, "only the last one
 * cancels the job", and docs/gateway.md, "a client that left asking again under its idempotency
 * key gets the job run again".
 *
 * The leave used to be two Redis calls: cancel-3.lua (found the job started and no other share)
 * and then the cancel flag (producer.ts `stop`). A join that landed between them passed add-9.lua's
 * `joinable` (no flag yet), added its share, and was then stopped by the flag: its stream ended
 * CANCELLED. In one process the order was certain (one connection: cancel-3, the join's add, the
 * flag); through the gateway it was a window of a few ms (about 1 in 20 joins sent 0-2 ms after
 * the abort). Now cancel-3.lua sets the flag itself: a coalesced join makes a job of its own, and
 * a repeat of the key is told JOB_STOPPING and sent again until the job has ended (found by a
 * probe, 7 Dec 2026).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Producer } from '@headroom/producer-sdk';
import { SONNET, startGatewayStack, type GatewayStack } from '../support/gateway-fleet.js';

let stack: GatewayStack;
let producer: Producer;

beforeAll(async () => {
  stack = await startGatewayStack({ latencyMs: 5, outputTokens: { min: 60, max: 60 }, streamTokenMs: 20 }, () => ({ dispatch: { concurrency: 2 } }));
  producer = stack.producer;
});
afterAll(async () => {
  await stack?.close();
});

const request = (content: string) => ({ model: SONNET, max_tokens: 60, messages: [{ role: 'user' as const, content }] });

/** Starts a stream, aborts it after its fifth event, and at once sends the same job again. */
async function leaveAndRejoin(input: Parameters<Producer['stream']>[0]) {
  const abort = new AbortController();
  const first = await producer.stream(input, { signal: abort.signal });
  let events = 0;
  await (async () => {
    for await (const _ of first) if (++events === 5) abort.abort();
  })().catch(() => undefined);
  const again = await producer.stream(input);
  return { sameJob: again.id === first.id, result: await again.result() };
}

describe('a join as the last caller leaves', () => {
  it('a coalesced join gets the whole answer, not CANCELLED', async () => {
    const { result } = await leaveAndRejoin({ provider: 'anthropic', priority: 'NORMAL', coalesce: true, request: request('rejoin, coalesced') });
    expect(result.usage.outputTokens).toBe(60);
  });

  it('a repeat of the idempotency key gets the whole answer, not CANCELLED', async () => {
    const { result } = await leaveAndRejoin({ provider: 'anthropic', priority: 'NORMAL', idempotencyKey: 'rejoin-key', request: request('rejoin, keyed') });
    expect(result.usage.outputTokens).toBe(60);
  });
});
