/**
 * Waiting for a streamed answer's client to take what was written, and saying why the wait ended.
 * A client too slow to read is cut (its call stopped) and logged as such; a connection that closed
 * meanwhile (the client left, or the gateway's shutdown grace ran out and it cut every connection)
 * is none of that, and the stream says which it was.
 */
import type { ServerResponse } from 'node:http';

/** `drained`: the client took it; `closed`: the connection is gone; `slow`: it did not read within the limit. */
export type ClientDrain = 'drained' | 'closed' | 'slow';

/**
 * Waits until the response drains, its connection closes, or `ms` pass. A connection already
 * destroyed counts as closed at once: a write after its socket was destroyed (the gateway's cut at
 * the grace's end) returns false before the response's `close` comes, and the client is no
 * slower for it.
 */
export function clientDrain(res: ServerResponse, ms: number): Promise<ClientDrain> {
  const socket = res.socket;
  if (res.destroyed || !socket || socket.destroyed) return Promise.resolve('closed');
  return new Promise((resolve) => {
    const done = (why: ClientDrain) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(why);
    };
    const onDrain = () => done('drained');
    const onClose = () => done('closed');
    const timer = setTimeout(() => done(socket.destroyed ? 'closed' : 'slow'), ms);
    res.once('drain', onDrain);
    res.once('close', onClose);
  });
}
