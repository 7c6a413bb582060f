/**
 * Structured logs (pino). Prompts and keys never reach a log line: callers log ids, lanes,
 * models and attempts, the path redaction below catches the usual secret-bearing fields, and
 * every line passes through `redactSecrets` on its way out — the choke point that catches a key
 * quoted inside a message (an SDK error repeating a provider's answer), whichever call site
 * logged it.
 */
import { pino, type Logger } from 'pino';
import { ErrorCode, HeadroomError } from './errors.js';
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

/** pino's levels, quietest last. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * The level `level` names, else `HEADROOM_LOG_LEVEL`, else `info`. pino throws a bare
 * "unknown level verbose" with a stack from deep inside the logger; a typo in the variable is bad
 * input, so it is refused as CONFIG_INVALID naming where the level came from and what is allowed.
 */
export function logLevelOf(level: string | undefined, env: NodeJS.ProcessEnv = process.env): LogLevel {
  const [source, value] = level !== undefined ? ['level', level] : ['HEADROOM_LOG_LEVEL', env.HEADROOM_LOG_LEVEL];
  // An empty variable is one set to nothing (`HEADROOM_LOG_LEVEL= headroom worker`): the default.
  if (value === undefined || value === '') return 'info';
  const known = LOG_LEVELS.find((l) => l === value.trim().toLowerCase());
  if (known) return known;
  throw new HeadroomError(ErrorCode.CONFIG_INVALID, `${source}: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value.slice(0, 60))}`);
}

export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  // minLength 1 writes each line as soon as it comes, as 0 does, but makes `logger.flush(cb)` wait
  // for the writes in flight: with 0, sonic-boom calls back at once, and a process that exits
  // next (a worker's last "worker stopped") can lose or reorder its last lines.
  const inner = (opts.destination as Destination | undefined) ?? pino.destination({ sync: false, minLength: 1 });
  return pino(
    {
      name: opts.name ?? 'headroom',
      level: logLevelOf(opts.level),
      redact: {
        paths: ['apiKey', '*.apiKey', 'headers.authorization', 'headers["x-api-key"]', 'request.messages', 'request.system', 'request.input', 'request.instructions', '*.request.messages', '*.request.input'],
        censor: '[redacted]',
      },
      base: { pid: process.pid },
    },
    scrubbing(inner) as pino.DestinationStream,
  );
}
