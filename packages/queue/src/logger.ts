/**
 * Structured logs (pino). Prompts and keys never reach a log line: callers log ids, lanes,
 * models and attempts, the path redaction below catches the usual secret-bearing fields, and
 * every line passes through `redactSecrets` on its way out — the choke point that catches a key
 * quoted inside a message (an SDK error repeating a provider's answer), whichever call site
 * logged it.
 */
import { pino, type Logger } from 'pino';
import { redactSecrets } from './redaction.js';

export type { Logger };

/**
 * A logger handed to Headroom code from outside (a producer's `logger` option): the three levels
 * it calls, each as (fields, message). pino's `Logger` is one, and so is `console`.
 */
export interface LoggerLike {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

interface Destination {
  write(line: string): unknown;
  flush?(cb?: (err?: Error) => void): void;
  flushSync?(): void;
  end?(): void;
}

/**
 * The stream pino writes to, scrubbing each serialized line. A key is ASCII without quotes or
 * backslashes, so it reads the same inside JSON as outside, and cutting it keeps the line valid.
 */
function scrubbing(inner: Destination): Destination {
  return {
    write: (line: string) => inner.write(redactSecrets(line)),
    ...(inner.flush ? { flush: (cb?: (err?: Error) => void) => inner.flush!(cb) } : {}),
    ...(inner.flushSync ? { flushSync: () => inner.flushSync!() } : {}),
    ...(inner.end ? { end: () => inner.end!() } : {}),
  };
}

export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  // minLength 1 writes each line as soon as it comes, as 0 does, but makes `logger.flush(cb)` wait
  // for the writes in flight: with 0, sonic-boom calls back at once, and a process that exits
  // next (a worker's last "worker stopped") can lose or reorder its last lines.
  const inner = (opts.destination as Destination | undefined) ?? pino.destination({ sync: false, minLength: 1 });
  return pino(
    {
      name: opts.name ?? 'headroom',
      level: opts.level ?? process.env.HEADROOM_LOG_LEVEL ?? 'info',
      redact: {
        paths: ['apiKey', '*.apiKey', 'headers.authorization', 'headers["x-api-key"]', 'request.messages', 'request.system', 'request.input', 'request.instructions', '*.request.messages', '*.request.input'],
        censor: '[redacted]',
      },
      base: { pid: process.pid },
    },
    scrubbing(inner) as pino.DestinationStream,
  );
}
