/**
 * Structured logs (pino). Prompts and keys never reach a log line: callers log ids, lanes,
 * models and attempts, and the redaction below catches the usual secret-bearing paths anyway.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'headroom',
      level: opts.level ?? process.env.HEADROOM_LOG_LEVEL ?? 'info',
      redact: {
        paths: ['apiKey', '*.apiKey', 'headers.authorization', 'headers["x-api-key"]', 'request.messages', 'request.system', '*.request.messages'],
        censor: '[redacted]',
      },
      base: { pid: process.pid },
    },
    (opts.destination as pino.DestinationStream | undefined) ?? pino.destination({ sync: false }),
  );
}
