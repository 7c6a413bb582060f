/**
 * The bench's pass-through proxy lets an idle upstream socket go itself, as the worker's transport
 * does, before the upstream's keep-alive timeout closes it: a request written on a socket whose
 * close is on its way fails with a reset ("Connection error" in `pnpm bench:gateway`'s proxy column).
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '@headroom/testing';
import { REPO_ROOT, spawnTsx } from '../support/fleet.js';

let upstream: Server;
let proxy: ChildProcess;
let proxyPort: number;
/** The upstream's connections from the proxy, each with whether the proxy ended it (not the upstream). */
const connections: { socket: Socket; endedByProxy: Promise<void> }[] = [];

beforeAll(async () => {
  upstream = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  // Far longer than the test waits: only the proxy can end the idle connection in time.
  upstream.keepAliveTimeout = 10 * 60_000;
  upstream.on('connection', (socket: Socket) => connections.push({ socket, endedByProxy: once(socket, 'end').then(() => undefined) }));
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  proxyPort = await freePort();
  proxy = spawnTsx(join(REPO_ROOT, 'test/bench/passthrough-proxy.ts'), [String(proxyPort), String((upstream.address() as AddressInfo).port)]);
  let out = '';
  await new Promise<void>((resolve, reject) => {
    proxy.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('proxy listening')) resolve();
    });
    proxy.once('exit', (code) => reject(new Error(`the proxy exited (${code})`)));
  });
});
afterAll(async () => {
  proxy?.kill();
  upstream?.closeAllConnections();
  upstream?.close();
});

it('closes its idle kept-alive upstream socket itself, long before the upstream would', async () => {
  const res = await fetch(`http://127.0.0.1:${proxyPort}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  expect(await res.json()).toEqual({ ok: true });
  expect(connections).toHaveLength(1);
  // The proxy's end of the connection comes after its idle timeout (the worker's, 4 s), while the
  // upstream keeps it for 10 minutes: without one, this waits until the test times out.
  await connections[0]!.endedByProxy;
}, 30_000);
