
import { describe, expect, it } from 'vitest';
import { Bucket, createLogger, fleetKeys, laneKeys, parseConfig, type HeadroomConfigInput } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { PressureMonitor } from './pressure-monitor.js';

const SONNET = 'claude-sonnet-4-6';
const db = redisForFile();
let seq = 0;


function monitor(over: Partial<HeadroomConfigInput> = {}) {
  const prefix = `pressure${++seq}`;
  const config = parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic', pool: 'sonnet-4', limits: { rpm: 50, itpm: 30_000, otpm: 8_000 } } }, ...over });
  const bucket = new Bucket(db.redis, { prefix });
  return { prefix, config, bucket, m: new PressureMonitor(db.redis, bucket, config, createLogger({ level: 'silent' })) };
}

describe('PressureMonitor', () => {
  it('sees no pressure on an idle pool with a full bucket, and sheds nothing', async () => {
    const { prefix, m } = monitor();
    await m.tick();
    expect(m.pressureOf('sonnet-4')?.value).toBe(0);
    expect(m.shedsLane('sonnet-4', 'low')).toBe(false);
    expect(await db.redis.hgetall(laneKeys(prefix, 'low').shedding)).toEqual({});
    expect(JSON.parse((await db.redis.hget(fleetKeys(prefix).pressure, 'sonnet-4'))!)).toMatchObject({ value: 0, shedding: false });
  });

  it('sheds LOW (and only LOW) while every model of the pool cools down, and stops when it ends', async () => {
    const { prefix, bucket, m } = monitor();
    const { untilMs } = await bucket.cooldown('sonnet-4', SONNET, { durationMs: 300 });
    await m.tick();
    expect(m.pressureOf('sonnet-4')?.value).toBe(1);
    expect(m.shedsLane('sonnet-4', 'low')).toBe(true);
    for (const lane of ['critical', 'high', 'normal'] as const) expect(m.shedsLane('sonnet-4', lane)).toBe(false);
    // Admission reads this entry: until (Redis time), the retry hint and the pressure.
    const entry = await db.redis.hget(laneKeys(prefix, 'low').shedding, 'sonnet-4');
    expect(entry).toMatch(/^\d+:\d+:1\.000$/);
    expect(Number(entry!.split(':')[1])).toBe(m.retryHintMs('sonnet-4'));
    expect(await db.redis.hexists(laneKeys(prefix, 'normal').shedding, 'sonnet-4')).toBe(0);

    // Past the cooldown's end, by Redis time:
    while ((await bucket.snapshot('sonnet-4', { rpm: 50 })).atMs <= untilMs!) await new Promise((r) => setTimeout(r, 20));
    await m.tick();
    expect(m.shedsLane('sonnet-4', 'low')).toBe(false);
    expect(await db.redis.hexists(laneKeys(prefix, 'low').shedding, 'sonnet-4')).toBe(0);
  });

  it('sheds NORMAL too when shedding.shedNormal is set', async () => {
    const { prefix, bucket, m } = monitor({ shedding: { shedNormal: true } });
    await bucket.cooldown('sonnet-4', SONNET, { durationMs: 5_000 });
    await m.tick();
    expect(m.shedsLane('sonnet-4', 'normal')).toBe(true);
    expect(await db.redis.hexists(laneKeys(prefix, 'normal').shedding, 'sonnet-4')).toBe(1);
  });

  it('sheds nothing at all with shedding disabled', async () => {
    const { bucket, m } = monitor({ shedding: { enabled: false } });
    await bucket.cooldown('sonnet-4', SONNET, { durationMs: 5_000 });
    await m.tick();
    expect(m.shedsLane('sonnet-4', 'low')).toBe(false);
  });

  it('hints a retry between a second and the shedding horizon', async () => {
    const { config, m } = monitor();
    expect(m.retryHintMs('sonnet-4')).toBe(config.shedding.horizonMs);
    await m.tick();
    expect(m.retryHintMs('sonnet-4')).toBe(1_000);
  });
});
