import { describe, expect, it } from 'vitest';
import { fleetKeys, laneKeys, poolKeys } from './keys.js';

const slotTag = (key: string) => /\{([^}]*)\}/.exec(key)?.[1];

describe('keys', () => {
  it('puts every key of a lane under one hash tag that matches what BullMQ builds', () => {
    const k = laneKeys('hr', 'critical');
    expect(k.bullPrefix).toBe('{hr:critical}');
    expect(k.wait).toBe('{hr:critical}:critical:wait');
    expect(k.marker).toBe('{hr:critical}:critical:marker');
    const keys = Object.entries(k)
      .filter(([name]) => name !== 'queueName')
      .map(([, v]) => (typeof v === 'function' ? (v as (arg: string) => string)('critical.7f3a') : v));
    expect(keys).toContain('{hr:critical}:hr:events:critical.7f3a');
    const tags = new Set(keys.map(slotTag));
    expect(tags).toEqual(new Set(['hr:critical']));
  });

  it('keeps lanes, pools and the fleet in different slots', () => {
    expect(slotTag(laneKeys('hr', 'low').wait)).not.toBe(slotTag(laneKeys('hr', 'high').wait));
    expect(slotTag(poolKeys('hr', 'sonnet-4').bucket)).toBe('hr:pool:sonnet-4');
    expect(slotTag(poolKeys('hr', 'sonnet-4').tenantBucket('acme'))).toBe('hr:pool:sonnet-4');
    expect(slotTag(poolKeys('hr', 'sonnet-4').throttle)).toBe('hr:pool:sonnet-4');
    expect(slotTag(poolKeys('hr', 'sonnet-4').inFlight)).toBe('hr:pool:sonnet-4');
    expect(slotTag(fleetKeys('hr').batchLeader)).toBe('hr:fleet');
  });
});
