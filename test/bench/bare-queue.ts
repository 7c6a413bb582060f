/**
 * The floor of `pnpm bench:gateway`: the fewest hops any Redis-queued path to the provider can
 * take, with none of Headroom's work on it (no lanes, admission, bucket, locks, retries or
 * validation). A front process takes an HTTP request and `LPUSH`es it; a back process, blocked in
 * `BLMOVE` (the wake-up delivers the job), makes the call with the same official SDK the worker
 * uses, over the worker's transport, and answers with one `MULTI` (`LREM` from its processing
 * list, `XADD` to the front's replies stream); the front, blocked in `XREAD`, answers the client.
 * Eight process wake-ups per call where a direct call takes two, as the gateway path's twelve: what
 * the added latency of a queue in front of the provider cannot go below on the machine the bench
 * runs on.
 *
 * usage: tsx bench/bare-queue.ts front <listen port> <redis url>
 *        tsx bench/bare-queue.ts back <simulator port> <redis url> <provider key>
 */
import { createServer } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { Redis } from 'ioredis';
import { createHttpFetch } from '@headroom/worker';

const [role, port, redisUrl, providerKey] = process.argv.slice(2);
const QUEUE = 'bare:queue';
const PROCESSING = 'bare:processing';
const REPLIES = 'bare:replies';
/** Calls in flight in the back process, as the worker's `dispatch.concurrency` in the bench. */
const CONCURRENCY = 64;

function front(listenPort: number): void {
  const commands = new Redis(redisUrl!);
  const reader = new Redis(redisUrl!);
  const waiting = new Map<string, (body: string, status: number) => void>();
  let seq = 0;
  void (async () => {
    let last = '$';
    for (;;) {
      const read = (await reader.xread('BLOCK', 0, 'STREAMS', REPLIES, last)) as [string, [string, string[]][]][] | null;
      for (const [id, fields] of read?.[0]?.[1] ?? []) {
        last = id;
        const [, jobId, , status, , body] = fields;
        waiting.get(jobId!)?.(body!, Number(status));
        waiting.delete(jobId!);
      }
    }
  })();
  createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const id = String(++seq);
      waiting.set(id, (body, status) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(body);
      });
      commands.lpush(QUEUE, JSON.stringify({ id, body: Buffer.concat(chunks).toString('utf8') })).catch(() => {
        waiting.delete(id);
        res.writeHead(503).end();
      });
    });
  }).listen(listenPort, '127.0.0.1', () => process.stdout.write(`bare queue front listening on ${listenPort}\n`));
}

async function back(simPort: number): Promise<void> {
  const blocking = new Redis(redisUrl!);
  const commands = new Redis(redisUrl!);
  // The worker's transport under the same SDK (providers/http-fetch.ts), so the floor stays a floor.
  const client = new Anthropic({ apiKey: providerKey!, baseURL: `http://127.0.0.1:${simPort}`, maxRetries: 0, fetch: createHttpFetch() });
  let inFlight = 0;
  let slotFree: (() => void) | undefined;
  const run = async (raw: string) => {
    const { id, body } = JSON.parse(raw) as { id: string; body: string };
    let status = 200;
    let answer: string;
    try {
      answer = JSON.stringify(await client.messages.create(JSON.parse(body)));
    } catch (err) {
      status = (err as { status?: number }).status ?? 502;
      answer = JSON.stringify({ type: 'error', error: { type: 'api_error', message: (err as Error).message } });
    }
    await commands.multi().lrem(PROCESSING, 1, raw).xadd(REPLIES, 'MAXLEN', '~', 10_000, '*', 'j', id, 's', status, 'v', answer).exec();
  };
  process.stdout.write('bare queue back ready\n');
  for (;;) {
    if (inFlight >= CONCURRENCY) await new Promise<void>((r) => { slotFree = r; });
    const raw = await blocking.blmove(QUEUE, PROCESSING, 'RIGHT', 'LEFT', 0);
    if (raw === null) continue;
    inFlight += 1;
    void run(raw).finally(() => {
      inFlight -= 1;
      slotFree?.();
      slotFree = undefined;
    });
  }
}

if (role === 'front') front(Number(port));
else if (role === 'back') await back(Number(port));
else throw new Error(`usage: bare-queue.ts front|back <port> <redis url> [provider key]; got role ${role}`);
