/**
 * When a test fails, the fleet processes it started say what they saw: the tail of each one's
 * output (its warnings, errors and any crash) is printed under the failure. A worker logs at warn
 * in tests, so that is where a job that never finished says why; without it, a failure that does
 * not come back on a rerun leaves only the test's own timeout to go on.
 */
import { afterEach, beforeEach } from 'vitest';
import { takeSpawned, type FleetProcess } from './fleet.js';

const TAIL_CHARS = 8_000;
/** Started before the file's first test (its `beforeAll`): every test of the file runs on them. */
const shared: FleetProcess[] = [];

beforeEach(() => {
  // A file's first test finds its `beforeAll` processes here; later tests find none.
  shared.push(...takeSpawned());
});

afterEach(({ task }) => {
  const procs = [...shared, ...takeSpawned()];
  if (task.result?.state !== 'fail') return;
  for (const p of procs) {
    const how = p.child.exitCode !== null ? `exited ${p.child.exitCode}` : p.child.signalCode !== null ? `killed by ${p.child.signalCode}` : 'still running';
    const out = p.output();
    const tail = out.length > TAIL_CHARS ? `[... ${out.length - TAIL_CHARS} characters before ...]\n${out.slice(-TAIL_CHARS)}` : out;
    console.error(`--- ${p.id} (pid ${p.child.pid}, ${how}): its output ---\n${tail || '(none)'}\n--- end of ${p.id} ---`);
  }
});
