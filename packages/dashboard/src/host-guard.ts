/**
 * Refuses requests not meant for this dashboard, against DNS rebinding: a page on another site,
 * open in an operator's browser, makes its own name resolve to the dashboard's address and then
 * reads and writes it as same-origin — with no credentials needed when the dashboard runs
 * `--local-only`. The browser still sends the attacker's name as `Host`, and its own origin as
 * `Origin` on writes, so:
 * - `Host` must be a loopback name (127.0.0.1, localhost, [::1]) or one of `dashboard.hostnames`;
 *   checked when the dashboard is local-only or names are configured (with neither, the names it
 *   is reached by are unknown, and auth is on);
 * - a write (any method but GET, HEAD, OPTIONS) carrying `Origin` must come from the very host it
 *   is sent to, and one marked `Sec-Fetch-Site: cross-site` is refused. Scripts and curl send
 *   neither header and are not affected.
 * Probes (`/healthz`, `/readyz`) are exempt: kubelets send the pod IP as Host.
 */
import type { RequestHandler } from 'express';

export interface HostGuardOptions {
  localOnly: boolean;
  /** `dashboard.hostnames`: names (optionally with `:port`) the dashboard is reached by. */
  hostnames: readonly string[];
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);
const PROBES = new Set(['/healthz', '/readyz']);
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** `Host` without its port, lower-cased (`[::1]:3000` -> `[::1]`). */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.lastIndexOf(':');
  return colon >= 0 ? h.slice(0, colon) : h;
}

function refuse(res: Parameters<RequestHandler>[1], code: string, message: string): void {
  res.status(403).json({ error: { code, message } });
}

export function hostGuard(opts: HostGuardOptions): RequestHandler {
  const named = new Set(opts.hostnames.map((h) => h.toLowerCase()));
  const namesOnly = new Set(opts.hostnames.map(hostName));
  const checkHost = opts.localOnly || named.size > 0;
  const hostAllowed = (host: string) => LOOPBACK.has(hostName(host)) || named.has(host.toLowerCase()) || namesOnly.has(hostName(host));
  return (req, res, next) => {
    if (PROBES.has(req.path)) return next();
    const host = req.headers.host ?? '';
    if (checkHost && !hostAllowed(host)) {
      refuse(res, 'FORBIDDEN_HOST', 'this dashboard is not served under that host name (add it to dashboard.hostnames)');
      return;
    }
    if (!SAFE_METHODS.has(req.method)) {
      if (req.headers['sec-fetch-site'] === 'cross-site') {
        refuse(res, 'FORBIDDEN_ORIGIN', 'cross-site writes are refused');
        return;
      }
      const origin = req.headers.origin;
      if (origin !== undefined) {
        let originHost: string | undefined;
        try {
          originHost = origin === 'null' ? undefined : new URL(origin).host;
        } catch {
          originHost = undefined;
        }
        if (originHost === undefined || originHost.toLowerCase() !== host.toLowerCase()) {
          refuse(res, 'FORBIDDEN_ORIGIN', 'writes must come from a page of this dashboard');
          return;
        }
      }
    }
    next();
  };
}
