/**
 * Job ids carry their lane (`normal.<uuid>`), so `getJob` and `cancel` go straight to the right
 * queue. BullMQ forbids `:` in custom ids, hence the dot.
 */
import { createHash, randomUUID } from 'node:crypto';
import { LANES, type Lane } from './lanes.js';

export function newJobId(lane: Lane): string {
  return `${lane}.${randomUUID()}`;
}

/** The same key always maps to the same id in a lane, so BullMQ's own id check dedupes. */
export function idempotentJobId(lane: Lane, idempotencyKey: string): string {
  return `${lane}.idem-${createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 40)}`;
}

export function laneOfJobId(id: string): Lane | undefined {
  const lane = id.slice(0, id.indexOf('.'));
  return (LANES as readonly string[]).includes(lane) ? (lane as Lane) : undefined;
}
