/**
 * Why a streamed answer's wait for its client ended, on real connections: a client that does not
 * read is slow; one whose connection the gateway cut (its shutdown grace over) is not, whether the
 * cut came while the gateway waited or just before (a write after the socket was destroyed returns
 * false before the response's close event).
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { clientDrain } from './client-drain.js';

/** More than any socket buffer holds: a write of it leaves the response waiting for its client. */
const LARGE = Buffer.alloc(64 * 1024 * 1024, 'x');

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  server = undefined;
});

/** A response whose client sent its request and then stopped reading, once a write of LARGE left it waiting. */
async function stuckResponse(): Promise<ServerResponse> {
  const answering = new Promise<ServerResponse>((resolve) => {
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      expect(res.write(LARGE)).toBe(false);
      resolve(res);
    });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const { port } = server!.address() as AddressInfo;
  const req = request({ port, host: '127.0.0.1', path: '/' }, (res) => res.pause());
  req.on('error', () => {});
  req.end();
  return answering;
}

describe('clientDrain', () => {
  it('says slow when the client does not read within the limit', async () => {
    expect(await clientDrain(await stuckResponse(), 50)).toBe('slow');
  });

  it('says closed, not slow, when the connection is cut while it waits', async () => {
    const res = await stuckResponse();
    const waited = clientDrain(res, 60_000);
    server!.closeAllConnections();
    expect(await waited).toBe('closed');
  });

  it('says closed, not slow, when the connection was cut just before (its close event not yet come)', async () => {
    const res = await stuckResponse();
    server!.closeAllConnections();
    expect(res.write('data: more\n\n')).toBe(false);
    expect(await clientDrain(res, 60_000)).toBe('closed');
  });

  it('says drained once the client reads again', async () => {
    const answering = new Promise<ServerResponse>((resolve) => {
      server = createServer((_req, res) => {
        res.writeHead(200);
        expect(res.write(LARGE)).toBe(false);
        resolve(res);
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const { port } = server!.address() as AddressInfo;
    const reading = new Promise<IncomingMessage>((resolve) => {
      const req = request({ port, host: '127.0.0.1', path: '/' }, (res) => {
        res.pause();
        resolve(res);
      });
      req.end();
    });
    const [res, client] = await Promise.all([answering, reading]);
    const waited = clientDrain(res, 60_000);
    client.resume();
    expect(await waited).toBe('drained');
  });
});
