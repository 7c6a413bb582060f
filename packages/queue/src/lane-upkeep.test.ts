import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { redisForFile } from '@headroom/testing/vitest';
import { publishFleetSettings } from './admission.js';
import { parseConfig } from './config.js';
import { fleetKeys, laneKeys } from './keys.js';
import { LaneUpkeep } from './lane-upkeep.js';

const db = redisForFile();

function fleet() {
  const prefix = `upkeep-${randomUUID().slice(0, 8)}`;
  const config = parseConfig({ redis: { prefix }, models: { 'claude-sonnet-4-6': { provider: 'anthropic', limits: { rpm: 50, itpm: 30_000, otpm: 8_000 } } } });
  const of = (holder: string) => new LaneUpkeep({ redis: db.redis, config, holder });
  return { prefix, config, of };
}

describe('LaneUpkeep with a holder', () => {
  it('keeps the lanes from one worker of the fleet, the holder of its lease, not from every worker', async () => {
    const { prefix, config, of } = fleet();
    await publishFleetSettings(db.redis, config);
    const [w1, w2] = [of('w1'), of('w2')];
    expect(await w1.leadRound()).toEqual({ republished: false, released: 0 });
    // The other worker's round is only its ask for the lease: the settings lost meanwhile are
    // not its to republish while w1 leads.
    await db.redis.del(laneKeys(prefix, 'normal').settings);
    expect(await w2.leadRound()).toBeUndefined();
    expect(await db.redis.exists(laneKeys(prefix, 'normal').settings)).toBe(0);
    expect(await w1.leadRound()).toMatchObject({ republished: true });
    // Held for three rounds, so a holder that dies loses it within them.
    const ttl = await db.redis.pttl(fleetKeys(prefix).upkeepLeader);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(6_000);
  });

  it('hands the upkeep over when its holder stops, at the next round of another', async () => {
    const { prefix, of } = fleet();
    const [w1, w2] = [of('w1'), of('w2')];
    await w1.leadRound();
    expect(await w2.leadRound()).toBeUndefined();
    await w1.stop();
    expect(await db.redis.exists(fleetKeys(prefix).upkeepLeader)).toBe(0);
    expect(await w2.leadRound()).toEqual({ republished: false, released: 0 });
    expect(await db.redis.get(fleetKeys(prefix).upkeepLeader)).toBe('w2');
  });

  it('republishes at the next round of any worker after a FLUSHALL, which takes the lease too', async () => {
    const { prefix, config, of } = fleet();
    await publishFleetSettings(db.redis, config);
    const [w1, w2] = [of('w1'), of('w2')];
    await w1.leadRound();
    // As a FLUSHALL would for this fleet's keys: the settings and the lease go together.
    await db.redis.del(fleetKeys(prefix).upkeepLeader, ...(['critical', 'high', 'normal', 'low', 'batch'] as const).map((lane) => laneKeys(prefix, lane).settings));
    expect(await w2.leadRound()).toMatchObject({ republished: true });
  });
});
