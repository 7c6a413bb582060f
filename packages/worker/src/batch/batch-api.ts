/**
 * What the batcher needs from a provider's batch API, one implementation per provider
 * (`anthropic-batch-api.ts`, `openai-batch-api.ts`), each on the official SDK with its retries
 * off. Every outcome is classified here, so the batcher never reads message text.
 */
import type { JobFailure, LlmJob, Provider, Usage } from '@headroom/queue';

export interface BatchEntry {
  customId: string;
  request: LlmJob['request'];
}

export type SubmitOutcome =
  | { kind: 'created'; batchId: string }
  /** Refused for good (400/401/403/404): no batch exists; the jobs fail with `failure`. */
  | { kind: 'rejected'; failure: JobFailure }
  /** Refused for now (429, an upload that failed): no batch exists; submit again after `afterMs`. */
  | { kind: 'retry'; afterMs: number; reason: string }
  /** No answer, or a 5xx: the batch may exist. Look for it before ever submitting again. */
  | { kind: 'uncertain'; reason: string };

export interface SubmitInput {
  claimId: string;
  model: string;
  /** OpenAI: the claim's API, which its batch's endpoint is (Chat Completions when absent). */
  api?: 'responses';
  entries: BatchEntry[];
  /** OpenAI: a file already uploaded for this claim, of these very entries (the claim drops it when it loses a job). */
  fileId?: string;
  /** OpenAI: called once the input file exists, before the batch is created. */
  onFileUploaded?(fileId: string): Promise<void>;
  /** The whole submission must be over by then; the request is aborted at the deadline. */
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface FindInput {
  claimId: string;
  /** Redis time of the intent (ms). */
  intentAt: number;
  /** Requests the intent was for. */
  count: number;
  fileId?: string;
  /** Batches the fleet already attributes to a claim: never another claim's. */
  knownBatchIds: ReadonlySet<string>;
  /** How long after the intent a batch made from it may carry as its creation time. */
  windowMs: number;
}

export type EntryOutcome =
  | { kind: 'succeeded'; response: unknown; usage: Usage }
  /** For good: the request's own fault, or a stop someone chose (BATCH_ERRORED, BATCH_CANCELED, BATCH_BAD_RESPONSE, BATCH_FAILED). */
  | { kind: 'failed'; failure: JobFailure }
  /**
   * Not the request's fault (a 5xx or overload on the provider's side, an expiry, no result at
   * all): the job goes back to the BATCH lane for a later batch, and ends with `failure` once its
   * resends are used up (job-settler `MAX_BATCH_REQUEUES`).
   */
  | { kind: 'requeue'; failure: JobFailure };

export interface ResultEntry {
  customId: string;
  outcome: EntryOutcome;
}

export type BatchStatus =
  | { ended: false }
  | {
      ended: true;
      /** When the provider says it ended (ms). */
      endedAt: number | undefined;
      /** Provider status, for logs and metrics (`ended`, `completed`, `expired`, ...). */
      status: string;
      /** The fate of requests the results do not mention; undefined = they go back to the lane, `BATCH_LOST` when used up. */
      missing?: EntryOutcome;
    };

export interface BatchApi {
  readonly provider: Provider;
  /**
   * `find` tells batches apart by request count (and creation time) alone: the provider keeps no
   * metadata on a batch. Two unanswered submissions of one count would each match the other's
   * batch, so such a provider gets one submission of a given count in flight at a time.
   */
  readonly findsByCount: boolean;
  /** Serialized size of one entry as it will be sent (for the provider's size limit). */
  entryBytes(entry: BatchEntry, model: string, api?: 'responses'): number;
  submit(input: SubmitInput): Promise<SubmitOutcome>;
  /** A batch made from this intent, if one exists; throws when the provider cannot be asked. */
  find(input: FindInput): Promise<string | undefined>;
  status(batchId: string): Promise<BatchStatus>;
  /** Every result entry of an ended batch, streamed. */
  results(batchId: string): AsyncIterable<ResultEntry>;
  /** Best effort: a duplicate batch that lost the race to be recorded. */
  cancel(batchId: string): Promise<void>;
  /**
   * Deletes what the provider stores for a batch whose every job is settled. OpenAI keeps the
   * input, output and error files until deleted, and they count against the organization's file
   * storage; Anthropic deletes a batch's results itself after 29 days, so it has nothing to do.
   */
  discard?(batchId: string): Promise<void>;
}

/** How far the provider's clock and Redis' may disagree when matching creation times. */
export const CLOCK_SKEW_MS = 60_000;
