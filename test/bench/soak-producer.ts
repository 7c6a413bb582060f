/**
 * The soak's producer, in a process of its own so its heap is measured alone. Offers jobs at a
 * steady rate across the four lanes, awaits every accepted job's result, and answers the parent's
 * `report` messages (over the fork IPC channel) with its heap and what became of each job.
 *
 * Env: SOAK_REDIS_URL, SOAK_PREFIX, SOAK_MODEL, SOAK_RATE (jobs/s), SOAK_MIX (CRITICAL/HIGH/
 * NORMAL/LOW percentages), SOAK_MAX_TOKENS, SOAK_RETENTION_COUNT.
 */
import { HeadroomError, JobFailedError, JobNotFoundError, Producer, type Priority } from '@headroom/producer-sdk';

export interface SoakCounts {
  offered: number;
  accepted: number;
  /** Refused at enqueue, by error code (QUEUE_FULL, SHED, ...): the caller was told, nothing lost. */
  refused: Record<string, number>;
  completed: number;
  /** Ended failed, by the code that starts the reason (SHED, RETRIES_EXHAUSTED, ...). */
  failed: Record<string, number>;
  /** Accepted, then gone without an ending: the number that must stay 0. */
  lost: number;
  /** Accepted and not ended yet. */
  outstanding: number;
}

/** Per priority: the longest wait (enqueue to the call that answered) among jobs completed since the last report. */
export type MaxWaits = Partial<Record<Priority, number>>;

export interface SoakReport {
  heapUsed: number;
  rss: number;
  counts: SoakCounts;
  maxWaitMs: MaxWaits;
}

export type ParentMessage = { type: 'report' } | { type: 'stop'; drainMs: number };
export type ChildMessage = { type: 'report'; report: SoakReport } | { type: 'drained'; report: SoakReport } | { type: 'ready' };

const env = (name: string, fallback: string) => process.env[name] ?? fallback;
const rate = Number(env('SOAK_RATE', '30'));
const mix = env('SOAK_MIX', '10/20/30/40').split('/').map(Number);
const priorities: Priority[] = ['CRITICAL', 'HIGH', 'NORMAL', 'LOW'];
const model = env('SOAK_MODEL', 'claude-sonnet-4-6');
const maxTokens = Number(env('SOAK_MAX_TOKENS', '64'));
const retentionCount = Number(env('SOAK_RETENTION_COUNT', '500'));

const producer = new Producer({
  redis: env('SOAK_REDIS_URL', 'redis://127.0.0.1:6379'),
  prefix: env('SOAK_PREFIX', 'soak'),
  connectTimeoutMs: 5_000,
  retention: { completedCount: retentionCount, failedCount: retentionCount },
});

let maxWaits: MaxWaits = {};
const counts: SoakCounts = { offered: 0, accepted: 0, refused: {}, completed: 0, failed: {}, lost: 0, outstanding: 0 };
const bump = (table: Record<string, number>, key: string) => {
  table[key] = (table[key] ?? 0) + 1;
};

function pick(): Priority {
  let r = Math.random() * 100;
  for (const [i, share] of mix.entries()) {
    r -= share ?? 0;
    if (r < 0) return priorities[i]!;
  }
  return 'LOW';
}

let seq = 0;
async function offerOne(): Promise<void> {
  const priority = pick();
  const i = seq++;
  counts.offered++;
  try {
    const handle = await producer.enqueue({
      priority,
      provider: 'anthropic',
      request: { model, max_tokens: maxTokens, messages: [{ role: 'user', content: `Soak request ${i} (${priority}): summarise the ticket in one line.` }] },
    });
    counts.accepted++;
    counts.outstanding++;
    handle.result({ timeoutMs: 3_600_000 }).then(
      (result) => {
        counts.completed++;
        maxWaits[priority] = Math.max(maxWaits[priority] ?? 0, result.timings.waitMs);
      },
      (err: unknown) => {
        if (err instanceof JobFailedError) bump(counts.failed, /^([A-Z_]+):/.exec(err.reason)?.[1] ?? 'UNKNOWN');
        else if (err instanceof JobNotFoundError) counts.lost++;
        else bump(counts.failed, `waiter:${(err as HeadroomError).code ?? 'error'}`);
      },
    ).finally(() => counts.outstanding--);
  } catch (err) {
    bump(counts.refused, err instanceof HeadroomError ? err.code : 'error');
  }
}

function report(): SoakReport {
  (globalThis as { gc?: () => void }).gc?.();
  const mem = process.memoryUsage();
  const waits = maxWaits;
  maxWaits = {};
  return { heapUsed: mem.heapUsed, rss: mem.rss, counts: { ...counts, refused: { ...counts.refused }, failed: { ...counts.failed } }, maxWaitMs: waits };
}

const send = (msg: ChildMessage) => process.send?.(msg);

// A tick every 100 ms offers rate/10 jobs (carrying the fraction over), in order.
let offering = true;
let credit = 0;
const tick = setInterval(() => {
  if (!offering) return;
  credit += rate / 10;
  const n = Math.floor(credit);
  credit -= n;
  void (async () => {
    for (let k = 0; k < n; k++) await offerOne();
  })();
}, 100);

process.on('message', (msg: ParentMessage) => {
  if (msg.type === 'report') send({ type: 'report', report: report() });
  if (msg.type === 'stop') {
    offering = false;
    clearInterval(tick);
    const deadline = Date.now() + msg.drainMs;
    const wait = setInterval(() => {
      if (counts.outstanding > 0 && Date.now() < deadline) return;
      clearInterval(wait);
      send({ type: 'drained', report: report() });
      void producer.close().then(() => process.exit(0));
    }, 250);
  }
});
send({ type: 'ready' });
