/**
 * What the fault, bad-input and secrets tests (and the soak) read from the outside: a fleet
 * process being ready, Redis' keys and values as text, a worker's /metrics. Read-only probes over
 * public surfaces (BullMQ's `getWorkers`, Redis commands, HTTP), so the tests never reach into
 * the processes they watch.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { laneKeys } from '@headroom/queue';
import type { FleetProcess } from './fleet.js';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 50 ms; throws `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 15_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`${what} not reached in ${ms} ms`);
    await sleep(50);
  }
}

/**
 * Resolves once every process has its lane Workers connected (BullMQ names each connection
 * `...:w:<worker id>`); throws with the process output if one exits or `ms` passes.
 */
export async function waitForFleet(redisUrl: string, prefix: string, procs: FleetProcess[], ms = 60_000): Promise<void> {
  const conn = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const k = laneKeys(prefix, 'low');
  const low = new Queue(k.queueName, { connection: conn, prefix: k.bullPrefix });
  try {
    const deadline = Date.now() + ms;
    for (;;) {
      const exited = procs.find((p) => p.child.exitCode !== null || p.child.signalCode !== null);
      if (exited) throw new Error(`headroom worker ${exited.id} exited during start:\n${exited.output()}`);
      const names = (await low.getWorkers()).map((w) => String(w.rawname ?? w.name ?? ''));
      if (procs.every((p) => names.some((n) => n.endsWith(`:w:${p.id}`)))) return;
      if (Date.now() > deadline) throw new Error(`workers not ready after ${ms} ms:\n${procs.map((p) => p.output()).join('\n')}`);
      await sleep(200);
    }
  } finally {
    await low.close();
    conn.disconnect();
  }
}

/** Every key matching `pattern` (SCAN, never KEYS). */
export async function scanKeys(redis: Redis, pattern = '*'): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  return keys;
}

/** Every key under a Headroom prefix: `{prefix:...}` hash tags. */
export const keysUnder = (redis: Redis, prefix: string) => scanKeys(redis, `{${prefix}:*`);

export interface DumpedKey {
  key: string;
  type: string;
  /** The value as text: each field, member, element and stream entry, binary-safe via latin1. */
  text: string;
}

/** Reads each key by its type, so nothing (hash fields, zset members, stream entries) goes unseen; unordered types come sorted, so two dumps compare. */
export async function dumpRedis(redis: Redis, pattern = '*'): Promise<DumpedKey[]> {
  const out: DumpedKey[] = [];
  for (const key of await scanKeys(redis, pattern)) {
    const type = await redis.type(key);
    let parts: (string | Buffer)[] = [];
    switch (type) {
      case 'string':
        parts = [(await redis.getBuffer(key)) ?? ''];
        break;
      case 'hash':
        // Sorted: a hash's order can change without a write (incremental rehashing on reads).
        parts = Object.entries(await redis.hgetallBuffer(key)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).flat();
        break;
      case 'list':
        parts = await redis.lrangeBuffer(key, 0, -1);
        break;
      case 'set':
        parts = (await redis.smembersBuffer(key)).sort(Buffer.compare);
        break;
      case 'zset':
        parts = await redis.zrangeBuffer(key, '0', '-1', 'WITHSCORES');
        break;
      case 'stream': {
        const entries = (await redis.xrangeBuffer(key, '-', '+')) as [Buffer, Buffer[]][];
        parts = entries.flatMap(([id, fields]) => [id, ...fields]);
        break;
      }
      case 'none':
        continue; // expired between SCAN and TYPE
      default:
        parts = [`(unread type ${type})`];
    }
    out.push({ key, type, text: parts.map((p) => (Buffer.isBuffer(p) ? p.toString('latin1') : p)).join('\n') });
  }
  return out;
}

/** A worker's Prometheus text (`dispatch.metricsPort`). */
export async function scrapeMetrics(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!res.ok) throw new Error(`/metrics on ${port}: ${res.status}`);
  return res.text();
}

/** The value of one sample (`name` with no labels, or the first sample whose line starts with it). */
export function metricValue(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** Sum of every sample of a counter, optionally only those whose labels contain `labelFragment`. */
export function metricSum(text: string, name: string, labelFragment = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!(line.startsWith(`${name}{`) || line.startsWith(`${name} `)) || !line.includes(labelFragment)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
