/**
 * Settles a call's promise when its connection drops with the call in flight. A connection that
 * does not resend after a reconnect (`autoResendUnfulfilledCommands: false`, which the Bucket
 * needs) drops such a command without ever settling its promise (ioredis 6), so a bucket's
 * `flush()` and `close()` would wait forever, and so would a job's run awaiting a cooldown or a
 * snapshot (hung on its worker, its lock renewed, never run) and the pressure leader's tick. Every
 * awaited call on the bucket's connection goes through it. Whether Redis ran the command is
 * unknown; the caller treats the call as failed.
 */
import type { Cluster, Redis } from 'ioredis';
import { RedisUnavailableError } from '../errors.js';

type Fail = (err: Error) => void;

// One listener per connection, however many buckets and calls share it.
const inFlight = new WeakMap<Redis | Cluster, Set<Fail>>();

function callsOn(redis: Redis | Cluster): Set<Fail> {
  let calls = inFlight.get(redis);
  if (!calls) {
    const set = new Set<Fail>();
    calls = set;
    inFlight.set(redis, set);
    redis.on('close', () => {
      const err = new RedisUnavailableError('the connection closed with a bucket call in flight; whether Redis applied it is unknown');
      for (const fail of [...set]) fail(err);
    });
  }
  return calls;
}

/** `call`, or a rejection once its connection closes first. One promise: this is the hot path. */
export function failOnConnectionLoss<T>(redis: Redis | Cluster, call: Promise<T>): Promise<T> {
  const calls = callsOn(redis);
  return new Promise<T>((resolve, reject) => {
    calls.add(reject);
    // After a reported loss the command's own outcome may still come: it then changes nothing.
    call.then(
      (value) => {
        calls.delete(reject);
        resolve(value);
      },
      (err: unknown) => {
        calls.delete(reject);
        reject(err);
      },
    );
  });
}
