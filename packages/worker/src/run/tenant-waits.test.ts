import { describe, expect, it } from 'vitest';
import { TENANT_RECHECK_MS, TenantWaits } from './tenant-waits.js';

describe('TenantWaits', () => {
  it("holds a tenant's jobs in the pool it was told to wait in only", () => {
    const waits = new TenantWaits();
    waits.told('sonnet', 'acme', 'tenant_tpm', 500, 1_000);
    expect(waits.heldFor('sonnet', 'acme', 1_100)).toEqual({ waitMs: 400, reason: 'tenant_tpm' });
    expect(waits.heldFor('haiku', 'acme', 1_100)).toBeUndefined();
    expect(waits.heldFor('sonnet', 'other', 1_100)).toBeUndefined();
  });

  it('holds no longer than TENANT_RECHECK_MS however long the bucket said, then leaves the next job to ask', () => {
    const waits = new TenantWaits();
    expect(waits.told('sonnet', 'acme', 'tenant_tpm', 34_000, 1_000)).toBe(TENANT_RECHECK_MS);
    expect(waits.heldFor('sonnet', 'acme', 1_000 + TENANT_RECHECK_MS - 1)).toEqual({ waitMs: 1, reason: 'tenant_tpm' });
    expect(waits.heldFor('sonnet', 'acme', 1_000 + TENANT_RECHECK_MS)).toBeUndefined();
    // A shorter wait is held as the bucket said it.
    expect(waits.told('sonnet', 'acme', 'tenant_tpm', 300, 5_000)).toBe(300);
  });
});
