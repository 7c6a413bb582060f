/**
 * A worker's or a gateway's own HTTP server: `/metrics` (this process's counters) and `/healthz` /
 * `/readyz`. It binds its config's `metricsHost` (loopback unless a pod asks for 0.0.0.0), and
 * with a token in the variable its `metricsTokenEnv` names, `/metrics` needs `Authorization:
 * Bearer <token>` (compared in constant time); the probes stay open, as a kubelet sends no
 * credentials. A separate entry point (`@headroom/queue/metrics-server`): producers never load it.
 *
 * ```ts
 * const server = await startMetricsServer({ name: 'worker', port: 9464, host: '127.0.0.1', token, registry, health });
 * await server.close();
 * ```
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listen } from '../listen.js';
import type { Logger } from '../logger.js';
import { registerSecret } from '../redaction.js';

/** What the server reads of a prom-client `Registry`. */
export interface MetricsRegistry {
  contentType: string;
  metrics(): Promise<string>;
}

export interface MetricsServerOptions {
  /** The process kind, for the 401's realm. */
  name: 'worker' | 'gateway';
  port: number;
  host: string;
  /** Required of `/metrics` when set. */
  token: string | undefined;
  registry: MetricsRegistry;
  /** The probes' answer: ready or not, and what to say. */
  health(): { ready: boolean; body: Record<string, unknown> };
  /**
   * `/healthz` says the process is alive (200 whatever `health()` says), for a liveness probe;
   * `/readyz` still follows `ready`. Without it both follow `ready`.
   */
  alive?: boolean;
}

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

function authorized(header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
  // Both sides hashed: neither the token's content nor its length leaks through timing.
  return match !== null && timingSafeEqual(digest(match[1]!.trim()), digest(token));
}

export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/metrics') {
      if (opts.token !== undefined && !authorized(req.headers.authorization, opts.token)) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': `Bearer realm="Headroom ${opts.name}"` }).end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: 'a bearer token is required' } }));
        return;
      }
      opts.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': opts.registry.contentType }).end(body),
        () => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'INTERNAL', message: 'could not collect metrics' } })),
      );
    } else if (path === '/healthz' || path === '/readyz') {
      const { ready, body } = opts.health();
      const ok = ready || (path === '/healthz' && opts.alive === true);
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    } else {
      res.writeHead(404).end();
    }
  });
  await listen(server, { port: opts.port, host: opts.host, what: `the ${opts.name}'s /metrics server`, setting: opts.name === 'worker' ? 'dispatch.metricsPort' : 'gateway.metricsPort' });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

/** A process's metrics settings: `dispatch.*` of a worker, `gateway.*` of a gateway. */
export interface MetricsSettings {
  metricsPort: number;
  metricsHost: string;
  metricsTokenEnv: string;
}

/**
 * Starts the process's metrics server from its settings: the token read from the variable they
 * name (and kept out of every log line), and a warning when the metrics are open beyond loopback.
 */
export async function serveMetrics(
  name: MetricsServerOptions['name'],
  settings: MetricsSettings,
  opts: { env: NodeJS.ProcessEnv; logger: Logger; registry: MetricsRegistry; health: MetricsServerOptions['health']; alive?: boolean },
): Promise<MetricsServer> {
  const token = opts.env[settings.metricsTokenEnv] || undefined;
  registerSecret(token);
  const server = await startMetricsServer({ name, port: settings.metricsPort, host: settings.metricsHost, token, registry: opts.registry, health: opts.health, ...(opts.alive ? { alive: true } : {}) });
  if (!token && !LOOPBACK.has(settings.metricsHost)) {
    opts.logger.warn({ host: settings.metricsHost, tokenEnv: settings.metricsTokenEnv }, `${name} /metrics is served on ${settings.metricsHost} without auth; set ${settings.metricsTokenEnv} to require a token`);
  }
  return server;
}
