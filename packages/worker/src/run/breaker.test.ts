import { beforeEach, describe, expect, it } from 'vitest';
import type { BreakerState } from '@headroom/queue';
import { Breaker } from './breaker.js';

let now = 0;
let transitions: string[] = [];
let breaker: Breaker;
const M = 'claude-sonnet-4-6';

beforeEach(() => {
  now = 1_000_000;
  transitions = [];
  breaker = new Breaker({
    failureThreshold: 3,
    openMs: 30_000,
    now: () => now,
    probeLeaseMs: 60_000,
    onTransition: (model, from, to) => transitions.push(`${model}:${from}->${to}`),
  });
});

function trip(): void {
  for (let i = 0; i < 3; i += 1) breaker.recordFailure(M, 'server');
}

describe('Breaker', () => {
  it('starts closed and lets every call through', () => {
    expect(breaker.state(M)).toBe('closed');
    expect(breaker.canCall(M)).toBe(true);
    expect(breaker.acquire(M)).toBe(true);
    expect(breaker.acquire(M)).toBe(true);
    expect(breaker.msUntilProbe(M)).toBe(0);
  });

  it('opens after failureThreshold consecutive server/overloaded/network failures', () => {
    breaker.recordFailure(M, 'server');
    breaker.recordFailure(M, 'overloaded');
    expect(breaker.state(M)).toBe('closed');
    breaker.recordFailure(M, 'network');
    expect(breaker.state(M)).toBe('open');
    expect(breaker.canCall(M)).toBe(false);
    expect(breaker.acquire(M)).toBe(false);
    expect(transitions).toEqual([`${M}:closed->open`]);
  });

  it('counts only consecutive failures: a success resets the count', () => {
    breaker.recordFailure(M, 'server');
    breaker.recordFailure(M, 'server');
    breaker.recordSuccess(M);
    breaker.recordFailure(M, 'server');
    breaker.recordFailure(M, 'server');
    expect(breaker.state(M)).toBe('closed');
  });

  it.each(['rate_limit', 'spend_cap', 'bad_response', 'invalid_request', 'auth', 'not_found', 'unknown'] as const)(
    'ignores %s failures (not a sign the model is down)',
    (kind) => {
      for (let i = 0; i < 10; i += 1) breaker.recordFailure(M, kind);
      expect(breaker.state(M)).toBe('closed');
    },
  );

  it('keeps models apart', () => {
    trip();
    expect(breaker.state(M)).toBe('open');
    expect(breaker.state('claude-haiku-4-5')).toBe('closed');
    expect(breaker.canCall('claude-haiku-4-5')).toBe(true);
  });

  it('stays open for exactly openMs, then goes half_open', () => {
    trip();
    now += 29_999;
    expect(breaker.state(M)).toBe('open');
    expect(breaker.canCall(M)).toBe(false);
    expect(breaker.msUntilProbe(M)).toBe(1);
    now += 1;
    expect(breaker.state(M)).toBe('half_open');
    expect(breaker.canCall(M)).toBe(true);
    expect(breaker.msUntilProbe(M)).toBe(0);
  });

  it('lets exactly one probe out at a time in half_open; canCall never takes it', () => {
    trip();
    now += 30_000;
    expect(breaker.canCall(M)).toBe(true);
    expect(breaker.canCall(M)).toBe(true);
    expect(breaker.acquire(M)).toBe(true);
    expect(breaker.acquire(M)).toBe(false);
    expect(breaker.canCall(M)).toBe(false);
    expect(breaker.msUntilProbe(M)).toBe(30_000);
  });

  it('closes when the probe succeeds', () => {
    trip();
    now += 30_000;
    breaker.acquire(M);
    breaker.recordSuccess(M);
    expect(breaker.state(M)).toBe('closed');
    expect(breaker.acquire(M)).toBe(true);
    expect(breaker.acquire(M)).toBe(true);
    expect(transitions).toEqual([`${M}:closed->open`, `${M}:open->half_open`, `${M}:half_open->closed`]);
    // And needs a full threshold of new failures to open again.
    breaker.recordFailure(M, 'server');
    breaker.recordFailure(M, 'server');
    expect(breaker.state(M)).toBe('closed');
  });

  it('re-opens for another openMs when the probe fails', () => {
    trip();
    now += 30_000;
    breaker.acquire(M);
    now += 1_000;
    breaker.recordFailure(M, 'overloaded');
    expect(breaker.state(M)).toBe('open');
    expect(breaker.msUntilProbe(M)).toBe(30_000);
    now += 30_000;
    expect(breaker.state(M)).toBe('half_open');
    expect(breaker.acquire(M)).toBe(true);
  });

  it('frees the probe when it is released unused, or ends in a failure that says nothing about health', () => {
    trip();
    now += 30_000;
    expect(breaker.acquire(M)).toBe(true);
    breaker.release(M);
    expect(breaker.acquire(M)).toBe(true);
    breaker.recordFailure(M, 'rate_limit');
    expect(breaker.state(M)).toBe('half_open');
    expect(breaker.acquire(M)).toBe(true);
  });

  it('presumes a probe lost after probeLeaseMs and lets another through', () => {
    trip();
    now += 30_000;
    expect(breaker.acquire(M)).toBe(true);
    now += 59_999;
    expect(breaker.acquire(M)).toBe(false);
    now += 1;
    expect(breaker.acquire(M)).toBe(true);
  });

  it('ignores late results while open: the timer stands', () => {
    trip();
    now += 10_000;
    breaker.recordSuccess(M);
    breaker.recordFailure(M, 'server');
    expect(breaker.state(M)).toBe('open');
    expect(breaker.msUntilProbe(M)).toBe(20_000);
  });

  it('reports every model it has seen in snapshot()', () => {
    trip();
    breaker.recordFailure('gpt-4.1', 'network');
    const states: Record<string, BreakerState> = {};
    for (const s of breaker.snapshot()) states[s.model] = s.state;
    expect(states).toEqual({ [M]: 'open', 'gpt-4.1': 'closed' });
    expect(breaker.snapshot().find((s) => s.model === M)).toEqual({ model: M, state: 'open', consecutiveFailures: 3, retryAt: 1_030_000 });
  });
});
