/**
 * Runs async tasks with at most `limit` in flight: settling a 100,000-job batch must neither go
 * one Redis round trip at a time nor open 100,000 at once.
 */
export class TaskPool {
  private readonly running = new Set<Promise<void>>();
  private firstError: unknown;

  constructor(private readonly limit: number) {}

  /** Waits for a free slot, then starts `task`; a failure surfaces from `drain()`. */
  async run(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    const p: Promise<void> = task()
      .catch((err: unknown) => {
        this.firstError ??= err;
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  /** Waits for every task; throws the first failure, if any. */
  async drain(): Promise<void> {
    await Promise.all(this.running);
    if (this.firstError !== undefined) throw this.firstError;
  }
}

/** `fn` over `items`, at most `limit` at a time, results in order. */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  const pool = new TaskPool(limit);
  for (const [i, item] of items.entries()) {
    await pool.run(async () => {
      out[i] = await fn(item);
    });
  }
  await pool.drain();
  return out;
}
