/**
 * The streamed jobs whose relay this worker's calls are writing, as its heartbeat tells the fleet
 * (`WorkerHeartbeat.relaying`). A job is in from the start of its streamed call, before the call's
 * first write, until the call has ended, whatever ended it. A worker that lost a job mid-stream
 * (its lock lapsed) may stream on, and the worker that took the job again follows its relay
 * (relay-follow.ts): a beat without the job, written after the relay's first entry, says that
 * call has ended (its relay writes failed, say, and stopped it) though this worker lives, so the
 * rest of the answer will not come. Counted: a job this worker took again may be in twice.
 */
export class RelayingJobs {
  readonly #count = new Map<string, number>();

  /** The job's call begins relaying; the returned function, called once, says it has ended. */
  add(jobId: string): () => void {
    this.#count.set(jobId, (this.#count.get(jobId) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = (this.#count.get(jobId) ?? 1) - 1;
      if (left > 0) this.#count.set(jobId, left);
      else this.#count.delete(jobId);
    };
  }

  ids(): string[] {
    return [...this.#count.keys()];
  }
}
