import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig, redactSecrets } from '@headroom/queue';
import { ClientKeys, laneFor, presentedKey } from './client-keys.js';

const config = (keys: Record<string, unknown>) => parseConfig({ models: { m: { provider: 'anthropic' } }, gateway: { keys } });
const ENV = { WEB_KEY: 'hr-web-0123456789abcdef', BATCH_KEY: 'hr-batch-0123456789abcdef' };

describe('ClientKeys', () => {
  it('finds the key a request presents, and nothing for an unknown or empty one', () => {
    const keys = ClientKeys.fromConfig(config({ web: { keyEnv: 'WEB_KEY', tenant: 'web' }, batch: { keyEnv: 'BATCH_KEY', maxPriority: 'normal' } }), ENV);
    expect(keys.authenticate(ENV.WEB_KEY)).toEqual({ name: 'web', tenant: 'web', defaultPriority: 'normal', maxPriority: 'critical' });
    expect(keys.authenticate(ENV.BATCH_KEY)?.name).toBe('batch');
    expect(keys.authenticate(`${ENV.WEB_KEY}x`)).toBeUndefined();
    expect(keys.authenticate('')).toBeUndefined();
    expect(keys.authenticate(undefined)).toBeUndefined();
  });

  it("registers each key as a secret of the process: cut out of its log lines and Redis writes, as a worker's provider keys are", () => {
    ClientKeys.fromConfig(config({ web: { keyEnv: 'WEB_KEY' } }), ENV);
    // A refusal quoting a key sent in the wrong place (`headroom-tenant: <key>`), as the gateway logs it.
    expect(redactSecrets(`headroom-tenant: expected a tenant name, got "${ENV.WEB_KEY}"`)).not.toContain(ENV.WEB_KEY);
  });

  it('refuses to start with an unset variable, a short key, two keys of one value, or no keys at all', () => {
    const issuesOf = (keys: Record<string, unknown>, env: NodeJS.ProcessEnv) => {
      try {
        ClientKeys.fromConfig(config(keys), env);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
      }
      throw new Error('expected a ConfigError');
    };
    expect(issuesOf({ web: { keyEnv: 'NOPE' } }, ENV)).toEqual(['gateway.keys.web.keyEnv: environment variable NOPE is not set']);
    expect(issuesOf({ web: { keyEnv: 'SHORT' } }, { SHORT: 'abc' })).toEqual(['gateway.keys.web.keyEnv: the key in SHORT is shorter than 16 characters']);
    expect(issuesOf({ a: { keyEnv: 'WEB_KEY' }, b: { keyEnv: 'SAME' } }, { ...ENV, SAME: ENV.WEB_KEY })).toEqual([
      'gateway.keys.b.keyEnv: holds the same key as gateway.keys.a: each client key must be its own',
    ]);
    expect(issuesOf({}, ENV)[0]).toContain('no client keys');
  });
});

describe('laneFor', () => {
  const key = { name: 'k', defaultPriority: 'low' as const, maxPriority: 'normal' as const };
  it('takes the asked lane up to the key’s highest, and the default when none is asked', () => {
    expect(laneFor(key, 'critical')).toBe('normal');
    expect(laneFor(key, 'high')).toBe('normal');
    expect(laneFor(key, 'normal')).toBe('normal');
    expect(laneFor(key, 'low')).toBe('low');
    expect(laneFor(key, undefined)).toBe('low');
  });
});

describe('presentedKey', () => {
  it("reads the providers' own auth headers", () => {
    expect(presentedKey({ 'x-api-key': ['abc'] })).toEqual({ key: 'abc' });
    expect(presentedKey({ authorization: ['Bearer abc'] })).toEqual({ key: 'abc' });
    expect(presentedKey({ authorization: ['bearer   abc  '] })).toEqual({ key: 'abc' });
    expect(presentedKey({ authorization: ['Basic abc'] })).toEqual({ missing: true });
    expect(presentedKey({ 'x-api-key': [''] })).toEqual({ missing: true });
    expect(presentedKey({})).toEqual({ missing: true });
    // The same key in both is one key; a proxy's Basic beside it is not a credential of ours.
    expect(presentedKey({ 'x-api-key': ['abc'], authorization: ['Bearer abc'] })).toEqual({ key: 'abc' });
    expect(presentedKey({ 'x-api-key': ['abc'], authorization: ['Basic eHl6'] })).toEqual({ key: 'abc' });
  });

  it('refuses two credentials that disagree, or one sent twice, whichever comes first', () => {
    expect(presentedKey({ 'x-api-key': ['abc'], authorization: ['Bearer xyz'] })).toEqual({ conflict: 'x-api-key and Authorization: Bearer hold different keys' });
    expect(presentedKey({ 'x-api-key': ['abc', 'xyz'] })).toEqual({ conflict: 'x-api-key sent more than once' });
    expect(presentedKey({ authorization: ['Bearer abc', 'Bearer abc'] })).toEqual({ conflict: 'Authorization: Bearer sent more than once' });
  });
});
