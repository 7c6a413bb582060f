import { describe, expect, it } from 'vitest';
import { HeadroomError, parseConfig } from '@headroom/queue';
import { isAuthorized, resolveAuth, type DashboardAuth } from './auth.js';

const dashboard = parseConfig({ models: { m: { provider: 'anthropic' } } }).dashboard;
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;

describe('resolveAuth', () => {
  it('refuses to start without credentials unless local-only, naming the variables to set', () => {
    let err: unknown;
    try {
      resolveAuth(dashboard, {}, { localOnly: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HeadroomError);
    expect((err as HeadroomError).code).toBe('CONFIG_INVALID');
    expect((err as Error).message).toContain('HEADROOM_DASHBOARD_USER');
    expect((err as Error).message).toContain('HEADROOM_DASHBOARD_TOKEN');
    expect((err as Error).message).toContain('--local-only');
    expect(resolveAuth(dashboard, {}, { localOnly: true })).toEqual({ mode: 'none' });
  });

  it('treats empty variables as unset', () => {
    expect(() => resolveAuth(dashboard, { HEADROOM_DASHBOARD_TOKEN: '' }, { localOnly: false })).toThrow(/no credentials/);
  });

  it('refuses half a username/password pair', () => {
    expect(() => resolveAuth(dashboard, { HEADROOM_DASHBOARD_USER: 'ops' }, { localOnly: true })).toThrow(/HEADROOM_DASHBOARD_USER is set but HEADROOM_DASHBOARD_PASSWORD is not/);
  });

  it('keeps auth on when local-only but credentials are set', () => {
    expect(resolveAuth(dashboard, { HEADROOM_DASHBOARD_TOKEN: 't0k' }, { localOnly: true })).toEqual({ mode: 'credentials', token: 't0k' });
  });

  it('reads the variables the config names', () => {
    const custom = parseConfig({ models: { m: { provider: 'anthropic' } }, dashboard: { usernameEnv: 'U', passwordEnv: 'P', tokenEnv: 'T' } }).dashboard;
    expect(resolveAuth(custom, { U: 'a', P: 'b', T: 'c' }, { localOnly: false })).toEqual({ mode: 'credentials', basic: { username: 'a', password: 'b' }, token: 'c' });
  });
});

describe('isAuthorized', () => {
  const both: DashboardAuth = { mode: 'credentials', basic: { username: 'ops', password: 'p:ss wörd' }, token: 'secret-token' };

  it('accepts the right basic credentials, passwords with colons and non-ASCII included', () => {
    expect(isAuthorized(basic('ops', 'p:ss wörd'), both)).toBe(true);
    expect(isAuthorized(basic('ops', 'p:ss word'), both)).toBe(false);
    expect(isAuthorized(basic('Ops', 'p:ss wörd'), both)).toBe(false);
    expect(isAuthorized(basic('ops', ''), both)).toBe(false);
  });

  it('accepts the right bearer token, with any scheme case', () => {
    expect(isAuthorized('Bearer secret-token', both)).toBe(true);
    expect(isAuthorized('bearer secret-token', both)).toBe(true);
    expect(isAuthorized('Bearer secret-toke', both)).toBe(false);
    expect(isAuthorized('Bearer secret-token-and-more', both)).toBe(false);
  });

  it('refuses missing, malformed and unconfigured schemes', () => {
    expect(isAuthorized(undefined, both)).toBe(false);
    expect(isAuthorized('', both)).toBe(false);
    expect(isAuthorized('Basic', both)).toBe(false);
    expect(isAuthorized('Basic !!!notbase64', both)).toBe(false);
    expect(isAuthorized('Digest abc', both)).toBe(false);
    expect(isAuthorized(basic('ops', 'p:ss wörd'), { mode: 'credentials', token: 'secret-token' })).toBe(false);
    expect(isAuthorized('Bearer secret-token', { mode: 'credentials', basic: { username: 'ops', password: 'x' } })).toBe(false);
  });

  it('lets everything through in local-only mode without credentials', () => {
    expect(isAuthorized(undefined, { mode: 'none' })).toBe(true);
  });
});
