import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { HeadroomError } from './errors.js';
import { createLogger, logLevelOf } from './logger.js';

describe('logLevelOf', () => {
  it('takes the option, else HEADROOM_LOG_LEVEL, else info', () => {
    expect(logLevelOf('debug', { HEADROOM_LOG_LEVEL: 'warn' })).toBe('debug');
    expect(logLevelOf(undefined, { HEADROOM_LOG_LEVEL: 'warn' })).toBe('warn');
    expect(logLevelOf(undefined, { HEADROOM_LOG_LEVEL: ' WARN ' })).toBe('warn');
    expect(logLevelOf(undefined, {})).toBe('info');
    expect(logLevelOf(undefined, { HEADROOM_LOG_LEVEL: '' })).toBe('info');
  });

  it('refuses an unknown HEADROOM_LOG_LEVEL as CONFIG_INVALID naming the variable and the levels', () => {
    let err: unknown;
    try {
      logLevelOf(undefined, { HEADROOM_LOG_LEVEL: 'verbose' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HeadroomError);
    expect((err as HeadroomError).code).toBe('CONFIG_INVALID');
    expect((err as Error).message).toBe('HEADROOM_LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"');
  });

  it('makes createLogger refuse a bad level rather than throw from inside pino', () => {
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    expect(() => createLogger({ level: 'verbose', destination: sink })).toThrow(/^level: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"$/);
    expect(createLogger({ level: 'warn', destination: sink }).level).toBe('warn');
  });
});
