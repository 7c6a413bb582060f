/**
 * A real Redis Cluster on loopback for tests: N `redis-server --cluster-enabled yes` masters on
 * free ports, joined with `redis-cli --cluster create`, ready once every node reports
 * `cluster_state:ok`. No Docker here, so the servers are plain child processes.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';

const run = promisify(execFile);

export interface RedisClusterOptions {
  /** @default 3 */
  masters?: number;
  /** Sets `requirepass` and `masterauth` on every node. */
  password?: string;
  /** Extra `redis-server` arguments for every node (e.g. TLS); `port` is the client port. */
  nodeArgs?: (port: number) => string[];
  /** Extra `redis-cli` arguments (e.g. `--tls --cacert ca.pem`). */
  cliArgs?: string[];
}

export interface RedisCluster {
  ports: number[];
  /** `redis-cli` with the auth and TLS arguments this cluster needs, against one node. */
  cli(port: number, ...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'headroom-cluster-'));
  const auth = opts.password ? ['--requirepass', opts.password, '--masterauth', opts.password] : [];
  const cliAuth = [...(opts.password ? ['-a', opts.password, '--no-auth-warning'] : []), ...(opts.cliArgs ?? [])];
  const nodes: EmbeddedRedis[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop({ kill: true })));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      // The bus port defaults to port + 10000, which may be taken or above 65535: pick it too.
      const busPort = await freePort();
      nodes.push(
        await startEmbeddedRedis({
          port,
          dir,
          args: [
            '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`),
            '--cluster-port', String(busPort), '--cluster-node-timeout', '5000',
            ...auth, ...(opts.nodeArgs?.(port) ?? []),
          ],
        }),
      );
    }
    const ports = nodes.map((n) => n.port);
    const cli = async (port: number, ...args: string[]) =>
      (await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...cliAuth, ...args])).stdout;
    await run('redis-cli', [...cliAuth, '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    const deadline = Date.now() + 20_000;
    for (const port of ports) {
      for (;;) {
        const info = await cli(port, 'cluster', 'info');
        if (info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${masters}`)) break;
        if (Date.now() > deadline) throw new Error(`cluster not ok on ${port}:\n${info}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { ports, cli, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
