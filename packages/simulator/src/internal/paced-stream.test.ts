import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { TransportFaultAction } from './faults.js';
import { type PacedStreamOptions, paceDeltas, type StreamDelivery } from './paced-stream.js';

// Just the surface paceDeltas uses: writes, corking, and the 'close' a dropped connection emits.
class FakeResponse extends EventEmitter {
  destroyed = false;
  writes: string[] = [];
  write(chunk: string): boolean {
    this.writes.push(chunk);
    return true;
  }
  cork(): void {}
  uncork(): void {}
  ended = false;
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit('close');
  }
  /** The client hangs up. */
  hangUp(): void {
    this.destroyed = true;
    this.emit('close');
  }
}

function run(res: FakeResponse, overrides: Partial<PacedStreamOptions> & { onDelta?: (count: number) => void } = {}) {
  const deltas: string[] = [];
  const settled: StreamDelivery[] = [];
  const progress: number[] = [];
  const pieces = Array.from({ length: 10 }, (_, i) => `t${i} `);
  const done = paceDeltas(res as unknown as ServerResponse, {
    pieces,
    outputTokens: pieces.length,
    latencyMs: 0,
    tokenMs: () => null,
    writeDelta: (_out, piece) => {
      deltas.push(piece);
      overrides.onDelta?.(deltas.length);
    },
    writeMalformed: (out) => out.write('data: {"broken":'),
    writeOverloaded: (out) => out.write('event: error'),
    fault: null,
    progress: (sent) => progress.push(sent),
    settle: (delivery) => settled.push(delivery),
    ...overrides,
  });
  return { done, deltas, settled, progress };
}

describe('paceDeltas', () => {
  it('writes every delta and settles once with the whole answer when nothing interrupts it', async () => {
    const res = new FakeResponse();
    const { done, deltas, settled, progress } = run(res);
    expect(await done).toBe(true);
    expect(deltas).toHaveLength(10);
    expect(progress.at(-1)).toBe(10);
    res.hangUp(); // a close after the end is the normal end of the response
    expect(settled).toEqual([{ charged: 10, outputSent: 10, clientClosed: false }]);
  });

  it('stops at a client close and settles once, charging the deltas written before it', async () => {
    const res = new FakeResponse();
    // A pace coarse enough that no stall of a busy machine makes the 4th delta due in the write
    // that sent the 3rd (due deltas go out together): at 5 ms one did, and all 10 went.
    const { done, deltas, settled } = run(res, {
      tokenMs: () => 100,
      onDelta: (count) => {
        if (count === 3) setImmediate(() => res.hangUp());
      },
    });
    expect(await done).toBe(false);
    expect(deltas).toHaveLength(3);
    expect(settled).toEqual([{ charged: 3, outputSent: 3, clientClosed: true }]);
  });

  it('strikes a transport fault half-way, charging the whole answer the provider generated', async () => {
    for (const fault of [{ kind: 'cut' }, { kind: 'malformed' }] as TransportFaultAction[]) {
      const res = new FakeResponse();
      const { done, deltas, settled } = run(res, { fault });
      expect(await done).toBe(false);
      expect(deltas).toHaveLength(5);
      expect(settled).toEqual([{ charged: 10, outputSent: 5, clientClosed: false }]);
      expect(res.destroyed).toBe(fault.kind === 'cut');
      if (fault.kind === 'malformed') expect(res.writes).toEqual(['data: {"broken":']);
    }
  });

  it('strikes a mid-call overload before the first delta: the error in the stream, the call given up', async () => {
    const res = new FakeResponse();
    const { done, deltas, settled } = run(res, { fault: { kind: 'overloaded-mid-call' } });
    expect(await done).toBe(false);
    expect(deltas).toEqual([]);
    expect(res.writes).toEqual(['event: error']);
    expect(res.ended).toBe(true);
    expect(settled).toEqual([{ charged: 0, outputSent: 0, clientClosed: false, givenUp: true }]);
  });

  it('reads the gap after each delta, so a pace change reaches a running stream', async () => {
    const res = new FakeResponse();
    let gap = 0;
    const started = performance.now();
    const { done, deltas } = run(res, { tokenMs: () => gap, onDelta: (count) => (gap = count >= 3 ? 30 : 0) });
    expect(await done).toBe(true);
    expect(deltas).toHaveLength(10);
    // Three deltas at once, then 30 ms before each of the other seven and before the close
    // (a lower bound: timers never fire early).
    expect(performance.now() - started).toBeGreaterThanOrEqual(8 * 30 - 10);
  });
});
