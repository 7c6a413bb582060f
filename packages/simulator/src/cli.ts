// `pnpm sim` / `headroom-sim`: runs the simulator until SIGINT or SIGTERM.
// Flags: --port N, --latency-ms N | MIN-MAX, --stream-token-ms N, --batch-completion-ms N.

import { parseArgs } from 'node:util';
import { startSimulator } from './index.js';

function number(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`--${flag} expects a number >= 0, got ${value}`);
  return parsed;
}

function latency(value: string | undefined): number | { min: number; max: number } | undefined {
  const range = value?.match(/^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/);
  if (range?.[1] !== undefined && range[2] !== undefined) return { min: Number(range[1]), max: Number(range[2]) };
  return number('latency-ms', value);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'latency-ms': { type: 'string' },
      'stream-token-ms': { type: 'string' },
      'batch-completion-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log('usage: headroom-sim [--port N] [--latency-ms N|MIN-MAX] [--stream-token-ms N] [--batch-completion-ms N]');
    return;
  }
  const latencyMs = latency(values['latency-ms']);
  const streamTokenMs = number('stream-token-ms', values['stream-token-ms']);
  const batchCompletionMs = number('batch-completion-ms', values['batch-completion-ms']);
  const sim = await startSimulator({
    port: number('port', values.port) ?? 4010,
    ...(latencyMs !== undefined ? { latencyMs } : {}),
    ...(streamTokenMs !== undefined ? { streamTokenMs } : {}),
    ...(batchCompletionMs !== undefined ? { batchCompletionMs } : {}),
  });
  console.log(`headroom simulator listening on ${sim.url}`);
  console.log(`  Anthropic baseURL: ${sim.url}    OpenAI baseURL: ${sim.url}/v1    stats: ${sim.url}/_sim/stats`);
  const stop = () => {
    sim.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
