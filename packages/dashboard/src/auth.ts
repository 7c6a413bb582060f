/**
 * Dashboard authentication: HTTP basic auth and/or a bearer token, from the environment variables
 * the config names. On by default: a dashboard with no credentials refuses to start unless it is
 * local-only (bound to 127.0.0.1). Secrets are compared in constant time — both sides are hashed
 * first, so neither their content nor their length leaks through timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { ErrorCode, HeadroomError, type HeadroomConfig } from '@headroom/queue';

export type DashboardAuth =
  /** Local-only without credentials: anyone who can reach 127.0.0.1 may look. */
  | { mode: 'none' }
  | { mode: 'credentials'; basic?: { username: string; password: string }; token?: string };

const set = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

/**
 * The credentials in force. Throws `CONFIG_INVALID` when none are set and the dashboard is not
 * local-only, or when only half of a username/password pair is set.
 */
export function resolveAuth(dashboard: HeadroomConfig['dashboard'], env: NodeJS.ProcessEnv, opts: { localOnly: boolean }): DashboardAuth {
  const username = set(env[dashboard.usernameEnv]);
  const password = set(env[dashboard.passwordEnv]);
  const token = set(env[dashboard.tokenEnv]);
  if ((username === undefined) !== (password === undefined)) {
    const [has, missing] = username === undefined ? [dashboard.passwordEnv, dashboard.usernameEnv] : [dashboard.usernameEnv, dashboard.passwordEnv];
    throw new HeadroomError(ErrorCode.CONFIG_INVALID, `dashboard: ${has} is set but ${missing} is not; set both for basic auth`);
  }
  if (username === undefined && token === undefined) {
    if (opts.localOnly) return { mode: 'none' };
    throw new HeadroomError(
      ErrorCode.CONFIG_INVALID,
      `dashboard: no credentials. Set ${dashboard.usernameEnv} and ${dashboard.passwordEnv} (basic auth) or ${dashboard.tokenEnv} (bearer token), or pass --local-only to serve 127.0.0.1 without auth`,
    );
  }
  return {
    mode: 'credentials',
    ...(username !== undefined && password !== undefined ? { basic: { username, password } } : {}),
    ...(token !== undefined ? { token } : {}),
  };
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
const safeEqual = (a: string, b: string) => timingSafeEqual(digest(a), digest(b));

/** Whether an `Authorization` header value carries the configured credentials. */
export function isAuthorized(header: string | undefined, auth: DashboardAuth): boolean {
  if (auth.mode === 'none') return true;
  if (!header) return false;
  const space = header.indexOf(' ');
  if (space < 0) return false;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (scheme === 'basic' && auth.basic) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    // Both compared every time (no short circuit): a wrong username takes as long as a wrong password.
    const userOk = safeEqual(decoded.slice(0, colon), auth.basic.username);
    const passOk = safeEqual(decoded.slice(colon + 1), auth.basic.password);
    return userOk && passOk;
  }
  if (scheme === 'bearer' && auth.token) return safeEqual(value, auth.token);
  return false;
}

/** Refuses requests without the credentials: 401 with a challenge the browser understands. */
export function requireAuth(auth: DashboardAuth): RequestHandler {
  const challenges: string[] = [];
  if (auth.mode === 'credentials' && auth.basic) challenges.push('Basic realm="Headroom", charset="UTF-8"');
  if (auth.mode === 'credentials' && auth.token) challenges.push('Bearer realm="Headroom"');
  return (req, res, next) => {
    if (isAuthorized(req.headers.authorization, auth)) return next();
    res
      .status(401)
      .set('www-authenticate', challenges)
      .set('cache-control', 'no-store')
      .json({ error: { code: 'UNAUTHORIZED', message: 'credentials required' } });
  };
}
