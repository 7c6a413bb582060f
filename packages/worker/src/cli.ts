/**
 * The `headroom` command: `headroom worker`, `headroom dashboard`, `headroom status`, `headroom demo`.
 */
import { parseArgs } from 'node:util';
import { ConfigError, HeadroomError, loadConfig, redisUrlOf } from '@headroom/queue';
import { startWorker } from './worker.js';

const USAGE = `usage: headroom <command> [options]

commands:
  worker      run a fleet process    --config headroom.config.yaml [--redis URL] [--id NAME]
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      config: { type: 'string', default: 'headroom.config.yaml' },
      redis: { type: 'string' },
      id: { type: 'string' },
    },
    allowPositionals: true,
  });
  switch (command) {
    case 'worker': {
      const config = loadConfig(values.config!);
      const redisUrl = values.redis ?? redisUrlOf(config);
      if (!redisUrl) throw new HeadroomError('CONFIG_INVALID', `no Redis URL: set ${config.redis.urlEnv} or redis.url in ${values.config}, or pass --redis`);
      const worker = await startWorker({ config, redisUrl, ...(values.id ? { id: values.id } : {}) });
      await new Promise<void>((resolve) => {
        const stop = () => { void worker.close().then(resolve); };
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      return 0;
    }
    default:
      process.stderr.write(USAGE);
      return command ? 2 : 0;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof HeadroomError) {
      process.stderr.write(`headroom: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`headroom: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
