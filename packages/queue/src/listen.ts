/**
 * Starts a server listening, turning the address errors an operator causes (a port another
 * process holds, a privileged port, a host that is not this machine's) into an
 * `AddressUnavailableError` naming the address and the setting that chose it. Before, each ended
 * the process with a raw `Error: listen EADDRINUSE` stack and exit 1.
 */
import type { Server } from 'node:net';
import { AddressUnavailableError } from './errors.js';

const REASONS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use',
  EACCES: 'permission denied (a port below 1024 needs privileges)',
  EADDRNOTAVAIL: 'the host is not an address of this machine',
};

export function listen(server: Server, at: { port: number; host: string; what: string; setting: string }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const reason = err.code === undefined ? undefined : REASONS[err.code];
      const address = at.host.includes(':') ? `[${at.host}]:${at.port}` : `${at.host}:${at.port}`;
      reject(reason === undefined ? err : new AddressUnavailableError(at.what, address, at.setting, reason, err));
    };
    server.once('error', onError);
    server.listen(at.port, at.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
