/**
 * The baseline of `pnpm bench:gateway`'s throughput: a bare node:http pass-through proxy, as thin
 * as a proxy gets (no parsing, no auth, no queue), forwarding every request to the simulator with
 * keep-alive connections. Run as its own process, as the gateway is.
 *
 * usage: tsx bench/passthrough-proxy.ts <listen port> <target port>
 */
import { Agent, createServer, request } from 'node:http';

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
const agent = new Agent({ keepAlive: true, maxSockets: 512 });

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
