/**
 * Reading an official SDK's stream the way a caller does, to tell a whole answer from one cut
 * short: whether the loop ended cleanly or raised, how many events came, and whether one of them
 * said the answer was whole (a `finish_reason`, a `message_stop`).
 */
export interface StreamRead {
  ended: 'cleanly' | 'with an error';
  whole: boolean;
  events: number;
  error?: unknown;
}

/** Reads `stream` to its end; `pause.run` is awaited once `pause.at` events are in, before the rest is read. */
export async function readStream(stream: AsyncIterable<unknown>, finished: (event: unknown) => boolean, pause?: { at: number; run: () => Promise<void> }): Promise<StreamRead> {
  let whole = false;
  let events = 0;
  try {
    for await (const event of stream) {
      events++;
      whole ||= finished(event);
      if (events === pause?.at) await pause.run();
    }
    return { ended: 'cleanly', whole, events };
  } catch (error) {
    return { ended: 'with an error', whole, events, error };
  }
}
