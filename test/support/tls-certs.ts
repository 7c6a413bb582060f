/**
 * A throwaway CA and a server certificate for 127.0.0.1, made with `openssl`, so tests can run
 * `redis-server --tls-port` and check that clients verify the server (no `rejectUnauthorized: false`).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCerts {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  ca: Buffer;
  /** `redis-server` arguments that serve TLS on `port` (plain TCP off) with these files. */
  redisArgs(port: number): string[];
  remove(): void;
}

export async function makeTestCerts(): Promise<TestCerts> {
  const dir = mkdtempSync(join(tmpdir(), 'headroom-tls-'));
  const f = (name: string) => join(dir, name);
  // EC keys: generated in milliseconds, and Redis and Node accept them.
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=headroom-test-ca']);
  await run('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-out', f('server.pem'), '-days', '1', '-extfile', f('ext.cnf')]);
  return {
    dir,
    caFile: f('ca.pem'),
    certFile: f('server.pem'),
    keyFile: f('server.key'),
    ca: readFileSync(f('ca.pem')),
    redisArgs: (port) => [
      '--port', '0', '--tls-port', String(port),
      '--tls-cert-file', f('server.pem'), '--tls-key-file', f('server.key'), '--tls-ca-cert-file', f('ca.pem'),
      '--tls-auth-clients', 'no',
    ],
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
