import { describe, expect, it } from 'vitest';
import { FAILING_MEMORY_MS, ThrottleStates } from './throttle-states.js';

describe('ThrottleStates', () => {
  it('lists the models last seen throttled or open as failing for FAILING_MEMORY_MS, and counts one open only for staleMs', () => {
    let now = 0;
    const states = new ThrottleStates(() => now, 1_000);
    states.note('dead', 'open');
    states.note('browned', 'throttled');
    states.note('fine', 'closed');
    states.note('unsaid', undefined);
    expect(states.failing().sort()).toEqual(['browned', 'dead']);
    expect(states.isOpen('dead')).toBe(true);
    now = 2_000;
    // Open is asked about again after staleMs; failing is remembered longer.
    expect(states.isOpen('dead')).toBe(false);
    expect(states.failing().sort()).toEqual(['browned', 'dead']);
    // A model seen recovering is not failing at once.
    states.note('browned', 'closed');
    expect(states.failing()).toEqual(['dead']);
    now = FAILING_MEMORY_MS;
    expect(states.failing()).toEqual([]);
  });
});
