/**
 * Every Lua script touches only keys in the Redis Cluster slot of the keys it declares (KEYS), on
 * a real Redis: a Cluster runs a script on the node of its declared keys, so a key a script builds
 * itself (from a prefix in ARGV, `own .. 'unfinished'`, or one BullMQ's embedded scripts build)
 * works there only while it carries the same hash tag. Each script is run through the function
 * that calls it in production, with the state that takes it down its key-building paths, while
 * MONITOR records what it ran: each command a script sends (`[0 lua]` lines, which follow the
 * EVALSHA that ran them), whose keys Redis itself names (`COMMAND GETKEYS`).
 *
 * The one script whose declared keys span slots is `ready-lanes` (the lanes' counts in one call),
 * which is documented as one-node only and never called on a Cluster with more than one lane.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedRedis, type EmbeddedRedis } from '@headroom/testing';
import { addToLane, publishFleetSettings, releaseJobs, type Added } from './admission.js';
import { Bucket } from './bucket.js';
import { parseConfig, poolOf, throttleParamsOf } from './config.js';
import { HeadroomError } from './errors.js';
import { releaseFailedHandOff } from './hand-off-rerun.js';
import type { LlmJob } from './job.js';
import { relayEvents } from './job-events.js';
import { coalesceKeyOf, handOffJobId, idempotentJobId } from './job-ids.js';
import { fleetKeys } from './keys.js';
import { cancelIfNotStarted } from './lane-cancel.js';
import { parkBatchJobs } from './batch-park.js';
import { laneHandle } from './lane-handle.test-support.js';
import { bringRunnableToFront, readyJobs } from './lane-fetch.js';
import { CACHE_TTL_OPTION, finishJob, REPLY_TO_OPTION } from './lane-finish.js';
import { retryFinishedJob } from './lane-retry.js';
import { forceReturnToLane, promoteDelayed, returnToLane } from './lane-return.js';
import type { Lane } from './lanes.js';
import { holdLease, releaseLease } from './lease.js';
import { loadScripts } from './scripts.js';

const SONNET = 'claude-sonnet-4-6';
const HAIKU = 'claude-haiku-4-5';
/** Declared keys in more than one slot, by design: see the module comment. */
const MULTI_SLOT = new Set(['ready-lanes']);

interface ScriptRun {
  script: string;
  keys: string[];
  /** Each command the script sent, as MONITOR shows it. */
  commands: string[][];
}

let server: EmbeddedRedis;
let redis: Redis;
let monitor: Awaited<ReturnType<Redis['monitor']>>;
const runs: ScriptRun[] = [];
const seen: string[] = [];
const closers: { close(): Promise<unknown> }[] = [];

/** Our scripts by their SHA: ioredis runs one by EVAL on a connection first, by EVALSHA after. */
const scriptBySha = new Map(loadScripts().map((s) => [createHash('sha1').update(s.lua).digest('hex'), s.name]));

beforeAll(async () => {
  server = await startEmbeddedRedis();
  redis = new Redis(server.url, { maxRetriesPerRequest: null });
  monitor = await redis.monitor();
  let current: ScriptRun | undefined;
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    seen.push(args.join(' '));
    if (source === 'lua') {
      current?.commands.push(args);
      return;
    }
    current = undefined;
    const command = args[0]?.toLowerCase();
    if (command !== 'evalsha' && command !== 'eval') return;
    const script = scriptBySha.get(command === 'eval' ? createHash('sha1').update(unescaped(args[1] ?? '')).digest('hex') : args[1]!);
    if (script === undefined) return;
    const numKeys = Number(args[2]);
    current = { script, keys: args.slice(3, 3 + numKeys), commands: [] };
    runs.push(current);
  });
});

afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
  monitor?.disconnect();
  redis?.disconnect();
  await server?.stop();
});

/** An argument as Redis sent it to MONITOR (escaped as `sdscatrepr` does: `\\n`, `\\"`, `\\xHH` for other bytes), as bytes. */
function unescaped(text: string): Buffer {
  const named: Record<string, number> = { n: 10, r: 13, t: 9, a: 7, b: 8, '"': 34, '\\': 92 };
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== '\\') {
      bytes.push(...Buffer.from(text[i]!, 'utf8'));
    } else if (text[i + 1] === 'x') {
      bytes.push(parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      bytes.push(named[text[i + 1]!] ?? text.charCodeAt(i + 1));
      i += 1;
    }
  }
  return Buffer.from(bytes);
}

/** What Redis Cluster hashes of a key: the text of its first non-empty `{...}`, or the whole key. */
function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

function lane(prefix: string, name: Lane) {
  const handle = laneHandle(redis, prefix, name, closers);
  return {
    ...handle,
    add: async (job: LlmJob, opts: Record<string, unknown> = {}, jobId = `${name}.${randomUUID()}`): Promise<string> => {
      const [added] = await addToLane(redis, handle.queue, prefix, name, [{ jobId, job, opts }]);
      if (added instanceof HeadroomError) throw added;
      return (added as Added).id;
    },
  };
}

const ask = (content: string, extra: Partial<LlmJob> = {}): LlmJob =>
  ({ priority: 'NORMAL', provider: 'anthropic', request: { model: SONNET, max_tokens: 16, messages: [{ role: 'user', content }] }, ...extra }) as LlmJob;

/** Runs every script through its production caller, down the paths that build keys of their own. */
async function runEveryScript(): Promise<void> {
  const prefix = `slots${randomUUID().slice(0, 6)}`;
  const config = parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic', fallback: [HAIKU] }, [HAIKU]: { provider: 'anthropic' } } });
  await publishFleetSettings(redis, config);
  const normal = lane(prefix, 'normal');
  const reply = { [REPLY_TO_OPTION]: 'reader-1' };

  // add: a tenant's job (usage, fair queue), a coalesced one with a result cache, its join, and an
  // idempotent request joining it (the alias beside the lane).
  const plain = await normal.add(ask('plain', { tenant: 'acme' }), reply);
  const shared = ask('shared', { coalesce: true });
  const coalesced = { deduplication: { id: coalesceKeyOf(shared) }, [CACHE_TTL_OPTION]: 60_000, ...reply };
  const sharedId = await normal.add(shared, coalesced);
  expect(await normal.add(shared, coalesced)).toBe(sharedId);
  const keyed = { ...shared, idempotencyKey: 'joins' };
  expect(await normal.add(keyed, coalesced, idempotentJobId('normal', 'joins'))).toBe(sharedId);

  // finish: completed (its reply, its cache key kept), failed with a stream's error entry.
  for (let i = 0; i < 2; i++) {
    const taken = await normal.take();
    const end = taken.job.id === plain
      ? { failed: 'PROVIDER_ERROR: boom', streamError: { kind: 'error' as const, data: '{"type":"error"}', failure: { code: 'PROVIDER_ERROR', message: 'boom' } } }
      : { completed: { ok: true } };
    expect(await finishJob(redis, prefix, 'normal', normal.backend, taken.job, taken.token, end as never)).toEqual({ status: 'finished' });
  }
  // retry: the failed job back in its lane, counted again.
  expect(await retryFinishedJob(redis, prefix, 'normal', plain, 'failed', 'acme')).toBe(true);

  // requeue, redelay, promote, force-requeue: a taken job back to its lane each way.
  let taken = await normal.take();
  expect(await returnToLane(redis, prefix, 'normal', taken.job.id!, taken.token)).toEqual({ status: 'moved' });
  taken = await normal.take();
  expect(await returnToLane(redis, prefix, 'normal', taken.job.id!, taken.token, { delayMs: 60_000 })).toEqual({ status: 'moved' });
  expect(await promoteDelayed(redis, prefix, 'normal', taken.job.id!)).toBe(true);
  taken = await normal.take();
  await forceReturnToLane(redis, prefix, 'normal', taken.job.id!, taken.token);

  // cancel (its reply and note), release.
  const doomed = await normal.add(ask('doomed', { tenant: 'acme' }), reply);
  expect(await cancelIfNotStarted(redis, prefix, doomed)).toBe('removed');
  // A job gone without its finish (removed by hand, as retention or a FLUSH would): its count goes back.
  const gone = await normal.add(ask('gone', { tenant: 'acme' }));
  await redis.del(`${normal.k.jobKeyPrefix}${gone}`);
  expect(await releaseJobs(redis, prefix, 'normal', [gone])).toBe(1);

  // relay: a stream's first write, then one more.
  const streamed = `normal.${randomUUID()}`;
  expect(await relayEvents(redis, prefix, streamed, [{ kind: 'start', model: SONNET, waitMs: 0, startedAt: Date.now() }], { first: true })).toBe('written');
  expect(await relayEvents(redis, prefix, streamed, [{ kind: 'end' }], { first: false })).toBe('written');

  // front-runnable: the primary's pool backed off, the job read for its ladder.
  await bringRunnableToFront(redis, prefix, 'normal', { pools: [poolOf(config, SONNET)], laneMaxWaitMs: 60_000, now: Date.now() });
  // ready-lanes: every lane's count in one call (one node).
  await readyJobs(redis, prefix, ['critical', 'high', 'normal', 'low'], Date.now());

  // release-hand-off: a LOW job shed to the batch lane, whose BATCH job then expired.
  const [low, batch] = [lane(prefix, 'low'), lane(prefix, 'batch')];
  const lowJob = ask('shed me', { priority: 'LOW', onShed: 'batch', idempotencyKey: 'k' });
  const lowId = await low.add(lowJob, {}, idempotentJobId('low', 'k'));
  const handOff = handOffJobId(lowId);
  const shedding = await low.take();
  await batch.add({ ...lowJob, sla: 'none' }, {}, handOff);
  await finishJob(redis, prefix, 'low', low.backend, shedding.job, shedding.token, { completed: { movedTo: handOff, reason: 'SHED: under pressure' } });
  const parked = await batch.take();
  await finishJob(redis, prefix, 'batch', batch.backend, parked.job, parked.token, { failed: 'BATCH_EXPIRED: expired' });
  expect(await releaseFailedHandOff(redis, prefix, 'low', lowId, handOff)).toBe(true);

  // batch-park, and a cancel of a BATCH job its claim holds unsent (its lock and stalled entry dropped).
  await batch.add({ ...ask('claimed'), priority: 'LOW', sla: 'none' } as LlmJob);
  const claimed = await batch.take();
  expect(await parkBatchJobs(redis, prefix, [claimed.job.id!], claimed.token, 60_000, { sending: false })).toEqual([]);
  expect(await cancelIfNotStarted(redis, prefix, claimed.job.id!)).toBe('removed');

  // acquire (with a tenant and a carried settle), cooldown, throttle-view.
  const bucket = new Bucket(redis, { prefix, throttle: throttleParamsOf(config) });
  const limits = { rpm: 1_000, itpm: 1_000_000, otpm: 1_000_000 };
  const pool = poolOf(config, SONNET);
  const acquire = () => bucket.acquire({ pool, limits, lane: 'normal', need: { requests: 1, inputTokens: 100, outputTokens: 100 }, model: SONNET, tenant: { id: 'acme', limits: { tpm: 1_000_000 } } });
  const grant = await acquire();
  if (grant.status !== 'granted') throw new Error(`expected a grant, got ${JSON.stringify(grant)}`);
  void bucket.settle(grant.reservation, { inputTokens: 10, outputTokens: 10 });
  await acquire();
  await bucket.flush();
  await bucket.cooldown(pool, SONNET, { durationMs: 1_000 });
  await bucket.throttles(pool, limits, [SONNET]);

  // lease.
  expect(await holdLease(redis, fleetKeys(prefix).pressureLeader, 'me', 1_000)).toBe(true);
  await releaseLease(redis, fleetKeys(prefix).pressureLeader, 'me');
}

describe('Lua scripts and Redis Cluster slots', () => {
  it("touch only keys with their declared keys' hash tag, every script run through its caller", async () => {
    await runEveryScript();
    // Everything sent before this has reached the monitor once it shows this.
    const marker = `lua-key-slots-${randomUUID()}`;
    await redis.echo(marker);
    await expect.poll(() => seen.some((line) => line.includes(marker)), { timeout: 10_000 }).toBe(true);

    expect(new Set(runs.map((r) => r.script))).toEqual(new Set(loadScripts().map((s) => s.name)));
    const offSlot: string[] = [];
    for (const run of runs) {
      const declared = new Set(run.keys.map(hashTagOf));
      if (!MULTI_SLOT.has(run.script) && declared.size !== 1) offSlot.push(`${run.script}: declared keys in ${declared.size} slots: ${run.keys.join(' ')}`);
      for (const command of run.commands) {
        const keys = (await redis.call('COMMAND', 'GETKEYS', ...command).catch(() => [])) as string[];
        for (const key of keys) {
          if (!declared.has(hashTagOf(key))) offSlot.push(`${run.script}: ${command[0]} ${key} is outside its declared keys' {${[...declared].join('}, {')}}`);
        }
      }
    }
    expect(offSlot).toEqual([]);
    // It did look: the scripts sent commands, among them to keys they built themselves.
    const touched = runs.flatMap((r) => r.commands).length;
    expect(touched).toBeGreaterThan(100);
  });
});
