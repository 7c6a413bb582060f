/**
 * ioredis' standalone connector, with every socket's errors heard for the socket's whole life.
 * ioredis listens to a socket's errors with `once`: a TLS socket its peer refuses can fail twice
 * (this side refuses the certificate, then the peer's alert arrives), and the second error, with
 * no listener left, was thrown as an unhandled 'error' event: a worker that had just found its
 * Redis's certificate untrusted crashed with a stack and exit 1 instead of exiting 2 naming it
 * (ioredis keeps `once`: redis/ioredis#961). The first error still reaches ioredis, which reports
 * it and reconnects as before; later ones on a socket already failed change nothing.
 *
 * Otherwise what ioredis' own StandaloneConnector does (not exported): a TCP or TLS socket to the
 * options' host and port (or path), created on the next tick as ioredis expects.
 */
import { createConnection, type NetConnectOpts, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { AbstractConnector } from 'ioredis';

interface SocketOptions {
  path?: string;
  host?: string;
  port?: number;
  family?: number;
  tls?: ConnectionOptions;
  disconnectTimeout?: number;
}

const ignore = () => {};

export class HeardSocketConnector extends AbstractConnector {
  readonly #options: SocketOptions;

  constructor(options: unknown) {
    const opts = options as SocketOptions;
    super(opts.disconnectTimeout ?? 2_000);
    this.#options = opts;
  }

  connect(): Promise<Socket | TLSSocket> {
    const o = this.#options;
    const target: Record<string, unknown> = o.path
      ? { path: o.path }
      : { ...(o.port != null ? { port: o.port } : {}), ...(o.host != null ? { host: o.host } : {}), ...(o.family != null ? { family: o.family } : {}) };
    this.connecting = true;
    return new Promise((resolve, reject) => {
      process.nextTick(() => {
        // ioredis' own message for a connection closed meanwhile, which it knows to ignore.
        if (!this.connecting) return reject(new Error('Connection is closed.'));
        try {
          this.stream = o.tls ? tlsConnect({ ...target, ...o.tls } as ConnectionOptions) : createConnection(target as unknown as NetConnectOpts);
        } catch (err) {
          return reject(err);
        }
        this.stream.once('error', (err: Error) => {
          this.firstError = err;
        });
        this.stream.on('error', ignore);
        resolve(this.stream);
      });
    });
  }
}
