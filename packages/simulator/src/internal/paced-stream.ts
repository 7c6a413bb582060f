// The part of a streamed answer both providers share: one delta per output token, paced over
// time, a transport fault half-way, and what the call is charged when it ends. A client that
// closes the connection mid-stream stops the generation there, and the call is charged the
// output tokens sent before the close, so a gateway that cancels a stream can be checked for it.

import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { TransportFaultAction } from './faults.js';
import { untilClosed } from './http-exchange.js';

export interface StreamDelivery {
  /** Output tokens the call is charged. */
  charged: number;
  /** The provider gave the call up (a mid-call overload): its input is given back too. */
  givenUp?: boolean;
  /** Output tokens whose deltas were written. */
  outputSent: number;
  clientClosed: boolean;
}

export interface PacedStreamOptions<Piece = string> {
  /** The answer, one piece per output token. */
  pieces: readonly Piece[];
  /** Output tokens the whole answer is charged (the usage the provider reports). */
  outputTokens: number;
  /** Until the first delta when `tokenMs()` is a number; spread over all deltas when it is null. */
  latencyMs: number;
  /** The gap between deltas, read before each gap so a runtime change applies to running streams. */
  tokenMs: () => number | null;
  writeDelta: (res: ServerResponse, piece: Piece) => void;
  /** Half of an event whose JSON never closes: a proxy that gave up mid-write. */
  writeMalformed: (res: ServerResponse) => void;
  /** The provider's overload error, in the stream (a mid-call overload). */
  writeOverloaded: (res: ServerResponse) => void;
  fault: TransportFaultAction | null;
  progress: (outputSent: number) => void;
  /** Runs exactly once: when the last delta is out, when a fault strikes, or when the client leaves. */
  settle: (delivery: StreamDelivery) => void;
}

/** A call the provider gave up before its first token (a mid-call overload), plain or streamed. */
export const GIVEN_UP: StreamDelivery = { charged: 0, outputSent: 0, clientClosed: false, givenUp: true };

/** How a call's stream is paced, faulted and settled: what the handler decides, not the provider's framing. */
export type StreamPacing = Pick<PacedStreamOptions, 'latencyMs' | 'tokenMs' | 'fault' | 'progress' | 'settle'>;

/**
 * Writes the deltas; resolves true when all are out and the caller should close the stream with
 * its final events, false when the stream ended early (client gone, or a fault struck).
 */
export async function paceDeltas<Piece>(res: ServerResponse, options: PacedStreamOptions<Piece>): Promise<boolean> {
  const { pieces, outputTokens } = options;
  let sent = 0;
  let settled = false;
  let clientClosed = false;
  const settle = (delivery: StreamDelivery) => {
    if (settled) return;
    settled = true;
    options.settle(delivery);
  };
  // 'close' also follows a normal end; only a close while deltas are still due is the client's.
  const onClose = () => {
    if (settled) return;
    clientClosed = true;
    const outputSent = Math.min(sent, outputTokens);
    settle({ charged: outputSent, outputSent, clientClosed: true });
  };
  res.once('close', onClose);

  // Spread mode keeps today's timing: n deltas and the close at equal steps over the latency.
  const spreadMs = options.latencyMs / (pieces.length + 1);
  const gap = () => options.tokenMs() ?? spreadMs;
  let due = performance.now() + (options.tokenMs() === null ? spreadMs : options.latencyMs);
  // A mid-call overload strikes before the first token; the others half-way.
  const faultAt = !options.fault ? -1 : options.fault.kind === 'overloaded-mid-call' ? 0 : Math.floor(pieces.length / 2);

  while (sent <= pieces.length) {
    const wait = due - performance.now();
    if (wait > 0) await pause(res, wait);
    if (clientClosed) return false;
    if (sent === faultAt && options.fault?.kind === 'overloaded-mid-call') {
      settle(GIVEN_UP);
      options.writeOverloaded(res);
      res.end();
      return false;
    }
    if (sent === faultAt && options.fault) {
      // The provider generated (and bills) the whole answer; the client sees half of it.
      settle({ charged: outputTokens, outputSent: Math.min(sent, outputTokens), clientClosed: false });
      if (options.fault.kind === 'cut') res.destroy();
      else if (options.fault.kind === 'stall') await untilClosed(res);
      else options.writeMalformed(res);
      return false;
    }
    if (sent === pieces.length) break;
    // Every delta already due goes out in one write: a pace finer than the timers' millisecond
    // groups tokens instead of stretching the stream.
    res.cork();
    do {
      options.writeDelta(res, pieces[sent] as Piece);
      sent += 1;
      due += gap();
    } while (sent < pieces.length && sent !== faultAt && due <= performance.now());
    res.uncork();
    options.progress(Math.min(sent, outputTokens));
  }
  settle({ charged: outputTokens, outputSent: outputTokens, clientClosed: false });
  res.off('close', onClose);
  return true;
}

/** Sleeps `ms`, or less if the client leaves: a slow stream must not outlive its connection. */
function pause(res: ServerResponse, ms: number): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.once('close', done);
  });
}
