import { describe, expect, it } from 'vitest';
import { TENANT_HOLD_MAX_MS, TENANT_RECHECK_MS, TenantWaits } from './tenant-waits.js';

/** A held job of the high lane whose draw refills in `paceMs`. */
const held = (id: string, paceMs = 0, ownDeadline = false) => ({ id, lane: 'high' as const, paceMs, ownDeadline });
/** A bucket's wait the tenant's calls in flight could not shorten. */
const sure = (waitMs: number) => ({ waitMs, sureWaitMs: waitMs });

describe('TenantWaits', () => {
  it("holds a tenant's jobs in the pool it was told to wait in only", () => {
    const waits = new TenantWaits();
    waits.told('sonnet', 'acme', 'j0', 'tenant_tpm', sure(500), 1_000);
    expect(waits.heldFor('sonnet', 'acme', held('j1'), 1_100)).toMatchObject({ waitMs: 400, reason: 'tenant_tpm' });
    expect(waits.heldFor('haiku', 'acme', held('j2'), 1_100)).toBeUndefined();
    expect(waits.heldFor('sonnet', 'other', held('j3'), 1_100)).toBeUndefined();
  });

  it('parks the job told to wait no longer than TENANT_RECHECK_MS however long the bucket said, then leaves the next job to ask', () => {
    const waits = new TenantWaits();
    expect(waits.told('sonnet', 'acme', 'j0', 'tenant_tpm', sure(34_000), 1_000)).toBe(TENANT_RECHECK_MS);
    expect(waits.heldFor('sonnet', 'acme', held('j1'), 1_000 + TENANT_RECHECK_MS - 1)).toMatchObject({ waitMs: 1, reason: 'tenant_tpm' });
    expect(waits.heldFor('sonnet', 'acme', held('j2'), 1_000 + TENANT_RECHECK_MS)).toBeUndefined();
    // A shorter wait is held as the bucket said it.
    expect(waits.told('sonnet', 'acme', 'j3', 'tenant_tpm', sure(300), 5_000)).toBe(300);
  });

  it("parks each held job for its turn in the tenant's line: the bucket's wait, then one refill of its draw per job ahead, a minute at most", () => {
    const waits = new TenantWaits();
    waits.told('sonnet', 'acme', 'j0', 'tenant_tpm', sure(5_000), 1_000);
    // Not for the recheck: a backlog parked for a second each went through the lane every second.
    expect(waits.heldFor('sonnet', 'acme', held('j1', 6_000), 1_000)?.parkMs).toBe(11_000);
    expect(waits.heldFor('sonnet', 'acme', held('j2', 6_000), 1_100)?.parkMs).toBe(16_900);
    for (let i = 3; i < 20; i++) waits.heldFor('sonnet', 'acme', held(`j${i}`, 6_000), 1_100);
    expect(waits.heldFor('sonnet', 'acme', held('j20', 6_000), 1_200)?.parkMs).toBe(TENANT_HOLD_MAX_MS);
    // A job with a deadline of its own asks again at the recheck: its turn could pass a deadline the refunds would meet.
    expect(waits.heldFor('sonnet', 'acme', held('d', 6_000, true), 1_200)).toEqual({ waitMs: 800, reason: 'tenant_tpm', sureWaitMs: 4_800, parkMs: 800 });
  });

  it("gives a held job what is left of the bucket's sure wait, not the recheck, as its deadline's view", () => {
    const waits = new TenantWaits();
    // 34 s named, 9 s of it sure (the rest the calls in flight could refund).
    waits.told('sonnet', 'acme', 'j0', 'tenant_tpm', { waitMs: 34_000, sureWaitMs: 9_000 }, 1_000);
    expect(waits.heldFor('sonnet', 'acme', held('d', 0, true), 1_500)).toMatchObject({ waitMs: 500, sureWaitMs: 8_500 });
    // All of it covered by refunds: no sure wait.
    waits.told('haiku', 'acme', 'j1', 'tenant_tpm', { waitMs: 34_000, sureWaitMs: 0 }, 1_000);
    expect(waits.heldFor('haiku', 'acme', held('e', 0, true), 1_500)).toMatchObject({ waitMs: 500, sureWaitMs: 0 });
  });

  it('ends the hold at a grant and names the earliest jobs still parked, for the caller to bring back', () => {
    const waits = new TenantWaits();
    waits.told('sonnet', 'acme', 'j0', 'tenant_tpm', sure(5_000), 1_000);
    for (const id of ['j1', 'j2', 'j3', 'j4', 'j5']) waits.heldFor('sonnet', 'acme', held(id, 1_000), 1_000);
    // j1 (parked until 7,000) came back on its own and asked again; j0, the asker, is granted.
    expect(waits.granted('sonnet', 'acme', 'j0', 7_000).map((p) => p.id)).toEqual(['j2', 'j3', 'j4']);
    // The hold is over: the next job asks the bucket.
    expect(waits.heldFor('sonnet', 'acme', held('j6'), 7_000)).toBeUndefined();
    waits.unpark('sonnet', 'acme', 'j2');
    expect(waits.granted('sonnet', 'acme', 'j6', 7_000).map((p) => p.id)).toEqual(['j3', 'j4', 'j5']);
    expect(waits.granted('haiku', 'acme', 'j7', 7_000)).toEqual([]);
  });
});
