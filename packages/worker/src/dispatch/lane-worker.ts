/**
 * A lane's BullMQ Worker that takes a job it cannot read, rather than throw on it.
 *
 * BullMQ's fetch (`moveToActive`) moves the job to `active` under this fetch's lock and only then
 * parses its stored `data`, `opts` and `progress`. A job written into a lane by hand with one of
 * them not JSON threw there, after the move, so the worker never learnt which job it held: the
 * job sat in `active` until its lock lapsed, the stalled check put it back, and it was taken and
 * thrown on again until BullMQ failed it as stalled, never `JOB_INVALID`. The BATCH leader, which
 * takes several jobs at once, lost the jobs taken beside it the same way (they stalled too), and
 * Bull Board's list of the lane answered 500 while the job was in it.
 *
 * Here the job is found by the lock this fetch took (its token is unique to the fetch), each field
 * that is not JSON is moved aside (`hrUnreadable<Field>`, kept for whoever looks into it) and
 * replaced with an empty value every reader can read, and the job is handed on with
 * `UnreadableJobData` for its data: the worker then fails it `JOB_INVALID`, naming the field, as
 * any job it cannot run (`checkTakenJob`).
 */
import { Job, Worker } from 'bullmq';
import { UnreadableJobData } from '@headroom/queue';

/** How far into `active` the job is looked for: the fetch put it at the head, and other workers' fetches since may be ahead of it. */
const ACTIVE_SEARCH = 64;

/** The stored fields BullMQ parses as JSON when it reads a job, and what each reads as when empty. */
const JSON_FIELDS = { data: '{}', opts: '{}', progress: '0' } as const;

export class LaneWorker extends Worker {
  protected override async moveToActive(token: string, name?: string): Promise<Job> {
    try {
      return await super.moveToActive(token, name);
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
      const taken = await this.#unreadableTakenWith(token);
      if (!taken) throw err;
      const job = await Job.fromId(this, taken.id);
      if (!job) throw err;
      job.token = token;
      job.data = new UnreadableJobData(taken.reason);
      return job;
    }
  }

  /**
   * The job this fetch locked whose fields are not JSON, those set aside, and what was wrong with
   * them. The BATCH leader takes several jobs at once under one token: every job it locked is
   * looked at, and the first that cannot be read is the one.
   */
  async #unreadableTakenWith(token: string): Promise<{ id: string; reason: string } | undefined> {
    const client = await this.getBackend().client;
    const ids = await client.lrange(this.toKey('active'), 0, ACTIVE_SEARCH - 1);
    // One small read each, sent back to back: this runs only for a job that could not be read.
    const locks = await Promise.all(ids.map((id) => client.get(`${this.toKey(id)}:lock`)));
    const fields = Object.keys(JSON_FIELDS) as (keyof typeof JSON_FIELDS)[];
    for (const [i, id] of ids.entries()) {
      if (locks[i] !== token) continue;
      const stored = await client.hmget(this.toKey(id), ...fields);
      const wrong: string[] = [];
      const aside: Record<string, string> = {};
      fields.forEach((field, f) => {
        const value = stored[f];
        if (value === null || value === undefined || value === '') return;
        try {
          JSON.parse(value);
        } catch (err) {
          wrong.push(`its stored ${field} is not JSON (${(err as Error).message}; ${JSON.stringify(value.slice(0, 40))}${value.length > 40 ? '...' : ''})`);
          aside[`hrUnreadable${field[0]!.toUpperCase()}${field.slice(1)}`] = value;
          aside[field] = JSON_FIELDS[field];
        }
      });
      if (wrong.length === 0) continue;
      await client.hset(this.toKey(id), aside);
      return { id, reason: `not a job: ${wrong.join('; ')}` };
    }
    return undefined;
  }
}
