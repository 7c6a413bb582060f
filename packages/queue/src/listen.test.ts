import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AddressUnavailableError } from './errors.js';
import { listen } from './listen.js';

describe('listen', () => {
  it('refuses a port in use with ADDRESS_UNAVAILABLE naming the address and the setting', async () => {
    const holder = createServer();
    await listen(holder, { port: 0, host: '127.0.0.1', what: 'the holder', setting: 'holder.port' });
    const { port } = holder.address() as AddressInfo;
    const second = createServer();
    try {
      const err = await listen(second, { port, host: '127.0.0.1', what: 'the gateway', setting: '--port' }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(AddressUnavailableError);
      expect(err).toMatchObject({ code: 'ADDRESS_UNAVAILABLE', address: `127.0.0.1:${port}`, setting: '--port' });
      expect((err as Error).message).toBe(`the gateway cannot listen on 127.0.0.1:${port}: the address is already in use; choose another with --port`);
    } finally {
      second.close();
      await new Promise((r) => holder.close(r));
    }
  });
});
