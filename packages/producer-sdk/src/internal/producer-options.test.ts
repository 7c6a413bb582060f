import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import { createLogger, type Logger } from '@headroom/queue';
import type { ProducerOptions } from '../producer.js';
import { type ProducerResolved, resolveProducerOptions } from './producer-options.js';

describe('resolveProducerOptions', () => {
  it('checks every option the public type declares, and no other', () => {
    expectTypeOf<keyof z.input<typeof ProducerResolved>>().toEqualTypeOf<keyof ProducerOptions>();
    expectTypeOf<ProducerOptions>().toExtend<z.input<typeof ProducerResolved>>();
  });

  it('fills in the defaults the options document', () => {
    expect(resolveProducerOptions({ redis: 'redis://127.0.0.1:6379' })).toEqual({
      redis: 'redis://127.0.0.1:6379',
      prefix: 'hr',
      maxJobBytes: 1024 * 1024,
      connectTimeoutMs: 2_000,
      resultCacheTtlMs: 0,
      retention: { completedSec: 86_400, failedSec: 604_800, completedCount: 10_000, failedCount: 10_000 },
    });
    expect(resolveProducerOptions({ redis: 'redis://h:1', retention: { completedCount: 0 } }).retention).toMatchObject({ completedCount: 0, failedCount: 10_000 });
  });

  it('takes an ioredis connection as it is, and refuses an object that is not one', () => {
    const connection = new Redis({ lazyConnect: true });
    expect(resolveProducerOptions({ redis: connection }).redis).toBe(connection);
    expect(() => resolveProducerOptions({ redis: { host: '127.0.0.1' } })).toThrow(/redis: expected a redis:\/\/.*or an ioredis connection, got object/);
    connection.disconnect();
  });

  it('names a missing redis once, beside the other bad options', () => {
    const err = (() => {
      try {
        resolveProducerOptions({ prefix: 'bad prefix' } as never);
      } catch (e) {
        return e as { issues: { path: string; message: string }[] };
      }
    })();
    expect(err?.issues.map((i) => i.path).sort()).toEqual(['prefix', 'redis']);
    expect(err?.issues.find((i) => i.path === 'redis')?.message).toMatch(/^no Redis URL \(got undefined\): set REDIS_URL/);
  });

  it('takes a pino logger or console as `logger`, and refuses what lacks warn, info or error', () => {
    expectTypeOf<Logger>().toExtend<NonNullable<ProducerOptions['logger']>>();
    expectTypeOf<Console>().toExtend<NonNullable<ProducerOptions['logger']>>();
    const pinoLogger = createLogger({ destination: new Writable({ write: (_c, _e, cb) => cb() }) });
    expect(resolveProducerOptions({ redis: 'redis://h:1', logger: pinoLogger }).logger).toBe(pinoLogger);
    expect(resolveProducerOptions({ redis: 'redis://h:1', logger: console }).logger).toBe(console);
    const expected = 'logger: expected a logger with warn, info and error methods, each taking (fields, message): a pino logger, or console';
    for (const logger of ['info', { warn() {}, info() {} }, null]) {
      expect(() => resolveProducerOptions({ redis: 'redis://h:1', logger })).toThrow(expected);
    }
  });

  it('never echoes a refused URL, password or not', () => {
    const err = (() => {
      try {
        resolveProducerOptions({ redis: 'redis://:hunter2-pw@cache.internal:99999' });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).toMatch(/redis: invalid Redis URL: /);
    expect(err?.message).not.toContain('cache.internal');
    expect(err?.message).not.toContain('hunter2');
  });
});
