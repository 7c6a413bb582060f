/**
 * A baseline worker process for the fleet bench: a plain BullMQ Worker on one prioritized queue,
 * calling the official Anthropic SDK with its default retries (maxRetries 2, honouring
 * retry-after), with no shared quota bucket, optionally behind BullMQ's own global limiter.
 *
 * Spawned by fleet-bullmq.ts with its settings as JSON in BENCH_BASELINE; prints `ready` once
 * its Worker is connected, and closes on SIGTERM.
 *
 * Each job's result records when the attempt the provider admitted started (a fetch wrapper
 * timestamps every attempt the SDK makes), so its wait reads the same as Headroom's
 * `timings.waitMs`: enqueue -> start of the call that got through.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import Anthropic from '@anthropic-ai/sdk';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

interface BaselineSettings {
  redisUrl: string;
  queue: string;
  simUrl: string;
  apiKey: string;
  concurrency: number;
  limiter?: { max: number; duration: number };
  id: string;
}

const settings = JSON.parse(process.env.BENCH_BASELINE ?? '') as BaselineSettings;
const attemptLog = new AsyncLocalStorage<number[]>();

const client = new Anthropic({
  apiKey: settings.apiKey,
  baseURL: settings.simUrl,
  // Left at the SDK's defaults on purpose: maxRetries 2, retry-after honoured, 10 min timeout.
  fetch: (input, init) => {
    attemptLog.getStore()?.push(Date.now());
    return fetch(input, init);
  },
});

export interface BaselineResult {
  pickedAt: number;
  callStart: number;
  attempts: number;
  inputTokens: number;
  outputTokens: number;
}

const worker = new Worker(
  settings.queue,
  async (job) => {
    const attempts: number[] = [];
    const pickedAt = Date.now();
    try {
      const message = await attemptLog.run(attempts, () => client.messages.create(job.data.request as Anthropic.MessageCreateParamsNonStreaming));
      const result: BaselineResult = {
        pickedAt,
        callStart: attempts.at(-1) ?? pickedAt,
        attempts: attempts.length,
        inputTokens: message.usage.input_tokens,
        outputTokens: message.usage.output_tokens,
      };
      return result;
    } catch (err) {
      const status = (err as { status?: number }).status ?? 'network';
      // The bench reads the JSON back from failedReason.
      throw new Error(`BENCH${JSON.stringify({ pickedAt, attempts: attempts.length, status })} ${(err as Error).message.slice(0, 200)}`);
    }
  },
  {
    connection: new Redis(settings.redisUrl, { maxRetriesPerRequest: null }),
    concurrency: settings.concurrency,
    ...(settings.limiter ? { limiter: settings.limiter } : {}),
    name: settings.id,
  },
);
worker.on('error', (err) => process.stderr.write(`baseline worker ${settings.id}: ${err.message}\n`));
await worker.waitUntilReady();
process.stdout.write('ready\n');

const stop = () => {
  worker.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
