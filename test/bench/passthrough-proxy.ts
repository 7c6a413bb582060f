/**
 * The baseline of `pnpm bench:gateway`'s throughput: a bare node:http pass-through proxy, as thin
 * as a proxy gets (no parsing, no auth, no queue), forwarding every request to the simulator with
 * keep-alive connections. Run as its own process, as the gateway is.
 *
 * usage: tsx bench/passthrough-proxy.ts <listen port> <target port>
 */
import { Agent, createServer, request } from 'node:http';
import { IDLE_SOCKET_MS } from '@headroom/worker';

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
// Idle upstream sockets are let go after IDLE_SOCKET_MS, as the worker's transport lets them go
// (http-fetch.ts): kept until the simulator's keep-alive timeout closed them (65 s, idle between
// the bench's rounds), a request could be written on a socket whose close was on its way, and
// failed with a reset ("Connection error" in the proxy column at high load). Closing idle sockets
// first removes that race; retrying on a reset would not be right for a POST, which the server may
// have taken before the reset, and no proxy in front of a provider API retries one.
const agent = new Agent({ keepAlive: true, maxSockets: 512, timeout: IDLE_SOCKET_MS });

createServer((req, res) => {
  const upstream = request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers, agent }, (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers);
    up.pipe(res);
  });
  upstream.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(upstream);
}).listen(listenPort, '127.0.0.1', () => process.stdout.write(`proxy listening on ${listenPort}\n`));
