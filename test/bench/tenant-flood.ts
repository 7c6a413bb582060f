/**
 * `pnpm bench:tenants` part 3's runaway tenant, in a service (process) of its own as it would be:
 * offers FLOOD_PER_SECOND jobs/s of tenant FLOOD_TENANT, in batches every 100 ms, without waiting
 * for results, until SIGTERM; then prints `offered <n>` and exits.
 *
 * Env: FLOOD_REDIS_URL, FLOOD_PREFIX, FLOOD_TENANT, FLOOD_PER_SECOND.
 */
import { Producer } from '@headroom/producer-sdk';
import { tenantJob } from './tenant-jobs.js';

const producer = new Producer({ redis: process.env.FLOOD_REDIS_URL!, prefix: process.env.FLOOD_PREFIX! });
const tenant = process.env.FLOOD_TENANT ?? 'a';
const batch = Math.max(1, Math.round(Number(process.env.FLOOD_PER_SECOND ?? 500) / 10));
let offered = 0;
let stop = false;
process.once('SIGTERM', () => { stop = true; });

console.log('flooding');
while (!stop) {
  const t = performance.now();
  // Refusals (a full lane, say) are part of a flood: counted as offered, not retried.
  await Promise.all(Array.from({ length: batch }, () => producer.enqueue(tenantJob(tenant, offered++)).catch(() => undefined)));
  await new Promise((r) => setTimeout(r, Math.max(0, 100 - (performance.now() - t))));
}
await producer.close();
console.log(`offered ${offered}`);
process.exit(0);
