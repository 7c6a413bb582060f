/**
 * A worker's own HTTP server: `/metrics` (this process's counters) and `/healthz` / `/readyz`.
 * It binds `dispatch.metricsHost` (loopback unless a pod asks for 0.0.0.0), and with a token in
 * the variable `dispatch.metricsTokenEnv` names, `/metrics` needs `Authorization: Bearer <token>`
 * (compared in constant time); the probes stay open, as a kubelet sends no credentials.
 *
 * ```ts
 * const server = await startMetricsServer({ port: 9464, host: '127.0.0.1', token, registry, health });
 * await server.close();
 * ```
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServerOptions {
  port: number;
  host: string;
  /** Required of `/metrics` when set. */
  token: string | undefined;
  registry: Registry;
  /** The probes' answer: ready or not, and what to say. */
  health(): { ready: boolean; body: Record<string, unknown> };
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
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="Headroom worker"' }).end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: 'a bearer token is required' } }));
        return;
      }
      opts.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': opts.registry.contentType }).end(body),
        () => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'INTERNAL', message: 'could not collect metrics' } })),
      );
    } else if (path === '/healthz' || path === '/readyz') {
      const { ready, body } = opts.health();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, resolve);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
