import { describe, expect, it } from 'vitest';
import { Bucket, createLogger, fleetKeys, laneKeys, parseConfig, type HeadroomConfigInput } from '@headroom/queue';
import { redisForFile } from '@headroom/testing/vitest';
import { PressureMonitor } from './pressure-monitor.js';

const SONNET = 'claude-sonnet-4-6';
const db = redisForFile();
let seq = 0;
const silent = createLogger({ level: 'silent' });

function fleet(over: Partial<HeadroomConfigInput> = {}) {
  const prefix = `pressure${++seq}`;
  const config = parseConfig({ redis: { prefix }, models: { [SONNET]: { provider: 'anthropic', pool: 'sonnet-4', limits: { rpm: 50, itpm: 30_000, otpm: 8_000 } } }, ...over });
  return { prefix, config, bucket: new Bucket(db.redis, { prefix }) };
}

function monitor(over: Partial<HeadroomConfigInput> = {}) {
  const f = fleet(over);
  return { ...f, m: new PressureMonitor({ redis: db.redis, bucket: f.bucket, config: f.config, logger: silent, holder: 'w1' }) };
}

/** Two workers' monitors on one fleet, each counting the ticks it computed. */
function twoWorkers() {
  const { prefix, config, bucket } = fleet();
  const computed = { w1: 0, w2: 0 };
  const of = (holder: 'w1' | 'w2') =>
    new PressureMonitor({ redis: db.redis, bucket, config, logger: silent, holder, adjust: (_pool, p) => { computed[holder] += 1; return p; } });
  return { prefix, config, bucket, computed, w1: of('w1'), w2: of('w2') };
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

  it('computes on one worker only: the others take the pressure it published, shedding alike', async () => {
    const { prefix, bucket, computed, w1, w2 } = twoWorkers();
    await bucket.cooldown('sonnet-4', SONNET, { durationMs: 5_000 });
    await w1.tick();
    await w2.tick();
    await w1.tick();
    await w2.tick();
    // Before, every worker computed every tick (about twenty commands each); now one does.
    expect(computed).toEqual({ w1: 2, w2: 0 });
    expect(await db.redis.get(fleetKeys(prefix).pressureLeader)).toBe('w1');
    expect(w2.pressureOf('sonnet-4')).toEqual(w1.pressureOf('sonnet-4'));
    expect(w2.shedsLane('sonnet-4', 'low')).toBe(true);
    expect(w2.retryHintMs('sonnet-4')).toBe(w1.retryHintMs('sonnet-4'));
  });

  it('hands the computing over when its worker stops, at the next tick of another', async () => {
    const { prefix, computed, w1, w2 } = twoWorkers();
    await w1.tick();
    await w2.tick();
    await w1.stop();
    expect(await db.redis.exists(fleetKeys(prefix).pressureLeader)).toBe(0);
    await w2.tick();
    expect(computed).toEqual({ w1: 1, w2: 1 });
    expect(await db.redis.get(fleetKeys(prefix).pressureLeader)).toBe('w2');
    // The lease expires by itself when its holder dies without stopping: it is set for three ticks.
    const ttl = await db.redis.pttl(fleetKeys(prefix).pressureLeader);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(3_000);
  });

  it('gives the computing up when it fails there (its bucket connection gone), for another worker to take', async () => {
    const { prefix, config, w2 } = twoWorkers();
    const gone = db.redis.duplicate();
    await gone.quit();
    const broken = new PressureMonitor({ redis: db.redis, bucket: new Bucket(gone, { prefix }), config, logger: silent, holder: 'w1' });
    await expect(broken.tick()).rejects.toThrow(/closed/i);
    expect(await db.redis.exists(fleetKeys(prefix).pressureLeader)).toBe(0);
    await w2.tick();
    expect(await db.redis.get(fleetKeys(prefix).pressureLeader)).toBe('w2');
  });

  it("stops acting on a pressure the leader has not renewed for longer than a shedding entry's hold", async () => {
    const { prefix, bucket, w1, w2 } = twoWorkers();
    await bucket.cooldown('sonnet-4', SONNET, { durationMs: 60_000 });
    await w1.tick();
    await w2.tick();
    expect(w2.shedsLane('sonnet-4', 'low')).toBe(true);
    // The leader keeps its lease but its ticks fail: what it published ages.
    const published = JSON.parse((await db.redis.hget(fleetKeys(prefix).pressure, 'sonnet-4'))!);
    await db.redis.hset(fleetKeys(prefix).pressure, 'sonnet-4', JSON.stringify({ ...published, atMs: published.atMs - 11_000 }));
    await w2.tick();
    expect(w2.pressureOf('sonnet-4')).toBeUndefined();
    expect(w2.shedsLane('sonnet-4', 'low')).toBe(false);
  });

  it('does not compute an idle fleet at rest again until a bucket grants or a job waits', async () => {
    const { prefix, config, bucket, m } = monitor();
    const publishedAt = async () => JSON.parse((await db.redis.hget(fleetKeys(prefix).pressure, 'sonnet-4'))!).atMs as number;
    await m.tick();
    const first = await publishedAt();
    // Nothing moved: the tick reads the lanes and the bucket state, and publishes nothing new.
    await m.tick();
    await m.tick();
    expect(await publishedAt()).toBe(first);
    expect(m.pressureOf('sonnet-4')?.value).toBe(0);

    // A grant rewrites the pool's state: the next tick computes again.
    await bucket.acquire({ pool: 'sonnet-4', limits: config.models[SONNET]!.limits, lane: 'normal', need: { inputTokens: 10, outputTokens: 10 } });
    await m.tick();
    const afterGrant = await publishedAt();
    expect(afterGrant).toBeGreaterThan(first);
    // Its bucket not yet full again (rpm 50 refills a request in 1.2 s), the pool is not at rest:
    await m.tick();
    expect(await publishedAt()).toBeGreaterThan(afterGrant);

    // A job waiting in a lane is work too, whatever the buckets say.
    const { m: other, prefix: otherPrefix } = monitor();
    await other.tick();
    const before = JSON.parse((await db.redis.hget(fleetKeys(otherPrefix).pressure, 'sonnet-4'))!).atMs as number;
    await db.redis.lpush(laneKeys(otherPrefix, 'low').wait, 'a-job');
    await other.tick();
    expect(JSON.parse((await db.redis.hget(fleetKeys(otherPrefix).pressure, 'sonnet-4'))!).atMs).toBeGreaterThan(before);
  });

  it('acts on an injected pressure on an idle fleet at rest from its next tick', async () => {
    const { prefix, config, bucket } = fleet();
    let brownout = false;
    const m = new PressureMonitor({ redis: db.redis, bucket, config, logger: silent, holder: 'w1', adjust: (_pool, p) => ({ ...p, value: brownout ? 1 : p.value }) });
    await m.tick();
    await m.tick();
    expect(m.shedsLane('sonnet-4', 'low')).toBe(false);
    brownout = true;
    await m.tick();
    expect(m.shedsLane('sonnet-4', 'low')).toBe(true);
    expect(await db.redis.hexists(laneKeys(prefix, 'low').shedding, 'sonnet-4')).toBe(1);
  });

  it("does not shed a pool's LOW jobs for another pool's LOW job past its max wait at the front of the lane", async () => {
    const haiku = 'claude-haiku-4-5';
    const limits = { rpm: 50, itpm: 30_000, otpm: 8_000 };
    const { prefix, config, bucket } = fleet({
      models: { [SONNET]: { provider: 'anthropic', pool: 'sonnet-4', limits }, [haiku]: { provider: 'anthropic', pool: 'haiku-4', limits } },
      lanes: { low: { maxWaitMs: 1_000 } },
    });
    const m = new PressureMonitor({ redis: db.redis, bucket, config, logger: silent, holder: 'w1' });
    // HIGH calls drew haiku's input tokens below what LOW may draw: a full bucket is not the
    // problem, but its LOW jobs keep up (none waits), so it is no reason to shed them.
    await bucket.acquire({ pool: 'haiku-4', limits, lane: 'high', need: { inputTokens: 20_000, outputTokens: 10 } });
    // The LOW lane's front: a sonnet job long past LOW's max wait (its pool saturated, say).
    const k = laneKeys(prefix, 'low');
    await db.redis.hset(`${k.jobKeyPrefix}late`, 'name', `anthropic:${SONNET}`, 'timestamp', Date.now() - 60_000);
    await db.redis.lpush(k.wait, 'late');
    await m.tick();
    expect(m.shedsLane('haiku-4', 'low')).toBe(false);
    expect(await db.redis.hexists(k.shedding, 'haiku-4')).toBe(0);

    // A haiku job behind it, past its max wait too: haiku's LOW work is not keeping up.
    await db.redis.hset(`${k.jobKeyPrefix}late-haiku`, 'name', `anthropic:${haiku}`, 'timestamp', Date.now() - 60_000);
    await db.redis.lpush(k.wait, 'late-haiku');
    await m.tick();
    expect(m.shedsLane('haiku-4', 'low')).toBe(true);
  });

  it('hints a retry between a second and the shedding horizon', async () => {
    const { config, m } = monitor();
    expect(m.retryHintMs('sonnet-4')).toBe(config.shedding.horizonMs);
    await m.tick();
    expect(m.retryHintMs('sonnet-4')).toBe(1_000);
  });
});
