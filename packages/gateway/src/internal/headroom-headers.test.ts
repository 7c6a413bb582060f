import { describe, expect, it } from 'vitest';
import { readHeadroomHeaders } from './headroom-headers.js';

describe('readHeadroomHeaders', () => {
  it('reads every option', () => {
    const { options, issues } = readHeadroomHeaders({
      'headroom-priority': 'CRITICAL',
      'headroom-tenant': 'acme',
      'headroom-fallback': 'claude-haiku-4-5, claude-opus-4-6',
      'headroom-max-wait-ms': '2500',
      'headroom-idempotency-key': 'ticket 4711',
      'headroom-coalesce': 'true',
      'headroom-sla': 'none',
      'x-other': 'ignored',
    });
    expect(issues).toEqual([]);
    expect(options).toEqual({
      priority: 'critical',
      tenant: 'acme',
      fallback: ['claude-haiku-4-5', 'claude-opus-4-6'],
      maxWaitMs: 2500,
      idempotencyKey: 'ticket 4711',
      coalesce: true,
      sla: 'none',
    });
  });

  it("reads headroom-fallback: none as no fallback, over the config's ladder for the model", () => {
    expect(readHeadroomHeaders({ 'headroom-fallback': ' None ' })).toEqual({ options: { fallback: [] }, issues: [] });
    expect(readHeadroomHeaders({ 'headroom-fallback': '' }).issues).toEqual([{ path: 'headroom-fallback', message: expect.stringContaining('or none') }]);
  });

  it('names every bad header', () => {
    const { issues } = readHeadroomHeaders({
      'headroom-priority': 'asap',
      'headroom-fallback': 'a,,b',
      'headroom-max-wait-ms': '1.5',
      'headroom-coalesce': 'yes',
      'headroom-tenant': 'a b',
    });
    expect(issues.map((i) => i.path).sort()).toEqual(['headroom-coalesce', 'headroom-fallback', 'headroom-max-wait-ms', 'headroom-priority', 'headroom-tenant']);
  });

  it('refuses an unknown headroom-* header and a control character before reading any value', () => {
    expect(readHeadroomHeaders({ 'headroom-prio': 'high' }).issues).toEqual([{ path: 'headroom-prio', message: expect.stringContaining('unknown header') }]);
    expect(readHeadroomHeaders({ 'headroom-idempotency-key': 'a\u0000b' }).issues).toEqual([{ path: 'headroom-idempotency-key', message: expect.stringContaining('control character') }]);
  });

  it('takes a non-ASCII idempotency key as Node hands over its latin1 bytes, and calls other non-ASCII what it is', () => {
    // "héllo" as a JS or Python client sends it (é is the one byte 0xe9), and as curl sends its UTF-8.
    expect(readHeadroomHeaders({ 'headroom-idempotency-key': 'h\u00e9llo' })).toEqual({ options: { idempotencyKey: 'héllo' }, issues: [] });
    expect(readHeadroomHeaders({ 'headroom-idempotency-key': Buffer.from('héllo', 'utf8').toString('latin1') }).issues).toEqual([]);
    expect(readHeadroomHeaders({ 'headroom-idempotency-key': 'h\u00e9llo\u007f' }).issues).toEqual([{ path: 'headroom-idempotency-key', message: 'holds a control character; expected printable characters' }]);
    expect(readHeadroomHeaders({ 'headroom-tenant': 'h\u00e9llo' }).issues).toEqual([{ path: 'headroom-tenant', message: 'holds a non-ASCII character; expected printable ASCII' }]);
    // Ignored (a key with its own tenant): neither read nor refused, and the others still are.
    expect(readHeadroomHeaders({ 'headroom-tenant': 'acme corp\t', 'headroom-priority': 'high' }, { ignore: ['headroom-tenant'] })).toEqual({ options: { priority: 'high' }, issues: [] });
  });
});
