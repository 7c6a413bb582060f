/**
 * A lane's BullMQ Worker that takes a job it cannot read, rather than throw on it.
 *
 * BullMQ's fetch (`moveToActive`) moves the job to `active` under this fetch's lock and only then
 * parses its stored `data`, `opts` and `progress`. A job written into a lane by hand with one of
 * them not JSON, or with `opts` JSON `null`, threw there, after the move, so the worker never learnt
 * which job it held: the job sat in `active` until its lock lapsed, the stalled check put it back,
 * and it was taken and thrown on again until BullMQ failed it as stalled, never `JOB_INVALID`. The
 * BATCH leader, which takes several jobs at once, lost the jobs taken beside it the same way (they
 * stalled too), and Bull Board's list of the lane answered 500 while the job was in it.
 *
 * Here the job is found by the lock this fetch took (its token is unique to the fetch), each field
 * its readers cannot read (not JSON, or JSON of another kind than they need: `null`, a number, an
 * array where an object is needed) is moved aside (`hrUnreadable<Field>`, kept for whoever looks
 * into it) and replaced with an empty value every reader can read, and the job is handed on with
 * `UnreadableJobData` for its data: the worker then fails it `JOB_INVALID`, naming the field, as any
 * job it cannot run (`checkTakenJob`). A job BullMQ reads without throwing but whose data or options
 * are not objects (`opts 5` reads as no options) is set aside the same way after its fetch.
 */
import { Job, Worker } from 'bullmq';
import { ReplyError } from 'ioredis';
import { ADMITTED_OPTION, isConnectionError, kindOf, UnreadableJobData } from '@headroom/queue';

/** How far into `active` the job is looked for: the fetch put it at the head, and other workers' fetches since may be ahead of it. */
const ACTIVE_SEARCH = 64;

/** The stored fields a job is read from as JSON, what each reads as when empty, and whether its readers need an object. */
const JSON_FIELDS = {
  data: { empty: '{}', object: true },
  opts: { empty: '{}', object: true },
  progress: { empty: '0', object: false },
} as const;
type JsonField = keyof typeof JSON_FIELDS;
const ALL_FIELDS = Object.keys(JSON_FIELDS) as JsonField[];

/** What is wrong with a stored field (none when its readers can read it), and whether BullMQ's fetch throws on it. */
function fieldIssue(field: JsonField, value: string | null | undefined): { issue: string; fatal: boolean } | undefined {
  // BullMQ reads a field that is absent or empty as its empty value.
  if (value === null || value === undefined || value === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    return { fatal: true, issue: `its stored ${field} is not JSON (${(err as Error).message}; ${JSON.stringify(value.slice(0, 40))}${value.length > 40 ? '...' : ''})` };
  }
  if (!JSON_FIELDS[field].object || (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))) return undefined;
  const kind = kindOf(parsed);
  // BullMQ lists the entries of the options, which throws on null alone: any other kind reads as
  // no options at all, and data of any kind is handed on as it is, for Headroom to refuse.
  return { fatal: field === 'opts' && parsed === null, issue: `its stored ${field} is ${kind === 'null' || kind.startsWith('an ') ? kind : `a ${kind}`}, not an object` };
}

export class LaneWorker extends Worker {
  /** Rescues after a throw run one at a time: two takes under one token (the BATCH leader's) must not both pick the same job. */
  #rescues: Promise<unknown> = Promise.resolve();

  protected override async moveToActive(token: string, name?: string): Promise<Job> {
    let job: Job | undefined;
    try {
      job = await super.moveToActive(token, name);
    } catch (err) {
      // Redis refusing a command or gone has no unreadable job behind it, and the rescue's own
      // reads would wait out the outage on this connection instead of letting the fetch fail.
      if (err instanceof ReplyError || isConnectionError(err)) throw err;
      const rescue = this.#rescues.then(() => this.#takenUnreadable(token));
      this.#rescues = rescue.catch(() => undefined);
      // A rescue that fails itself (Redis gone) leaves the fetch's own error to be reported.
      const rescued = await rescue.catch(() => undefined);
      if (!rescued) throw err;
      return rescued;
    }
    // An empty lane: BullMQ's type says a Job, its fetch gives undefined.
    if (!job) return job as unknown as Job;
    // Read again only when what BullMQ made of the job looks wrong, so a good job costs nothing:
    // data that is not an object, or options without admission's mark (`opts 5` reads as `{}`).
    const data: unknown = job.data;
    const suspect: JsonField[] = [];
    if (data === null || typeof data !== 'object' || Array.isArray(data)) suspect.push('data');
    if ((job.opts as Record<string, unknown>)[ADMITTED_OPTION] !== job.id) suspect.push('opts');
    if (suspect.length === 0) return job;
    // On a failed read the job goes on as BullMQ read it: its check or admission's refuses it.
    const reason = await this.#setAside(job.id!, suspect, false).catch(() => undefined);
    if (reason) job.data = new UnreadableJobData(reason);
    return job;
  }

  /**
   * The job this fetch locked that BullMQ could not read, its unreadable fields set aside. The
   * BATCH leader takes several jobs at once under one token: every job it locked is looked at, and
   * the first BullMQ throws on is the one.
   */
  async #takenUnreadable(token: string): Promise<Job | undefined> {
    const client = await this.getBackend().client;
    const ids = await client.lrange(this.toKey('active'), 0, ACTIVE_SEARCH - 1);
    // One small read each, sent back to back: this runs only for a job that could not be read.
    const locks = await Promise.all(ids.map((id) => client.get(`${this.toKey(id)}:lock`)));
    for (const [i, id] of ids.entries()) {
      if (locks[i] !== token) continue;
      const reason = await this.#setAside(id, ALL_FIELDS, true);
      if (!reason) continue;
      const job = await Job.fromId(this, id);
      if (!job) return undefined;
      job.token = token;
      job.data = new UnreadableJobData(reason);
      return job;
    }
    return undefined;
  }

  /**
   * Moves aside each of the job's `fields` its readers cannot read, and says what was wrong with
   * them; nothing when all can be read, or (`fatalOnly`) when none is one BullMQ throws on.
   */
  async #setAside(id: string, fields: readonly JsonField[], fatalOnly: boolean): Promise<string | undefined> {
    const client = await this.getBackend().client;
    const stored = await client.hmget(this.toKey(id), ...fields);
    const wrong = fields.flatMap((field, f) => {
      const found = fieldIssue(field, stored[f]);
      return found ? [{ field, value: stored[f]!, ...found }] : [];
    });
    if (wrong.length === 0 || (fatalOnly && !wrong.some((w) => w.fatal))) return undefined;
    const aside: Record<string, string> = {};
    for (const { field, value } of wrong) {
      aside[`hrUnreadable${field[0]!.toUpperCase()}${field.slice(1)}`] = value;
      aside[field] = JSON_FIELDS[field].empty;
    }
    await client.hset(this.toKey(id), aside);
    return `not a job: ${wrong.map((w) => w.issue).join('; ')}`;
  }
}
