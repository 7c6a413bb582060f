/**
 * Jobs parked in a lane's delayed set behind their tenant's tokens/min quota, as any worker can
 * find them. The worker that parks them spaces them by the quota and brings the next one back
 * early when the tenant's bucket grants again, from its own memory (the worker's tenant-waits.ts);
 * no other worker knows them. A fleet restarted with a raised quota then left them waiting out
 * the old spacing, up to a minute, though the tenant was no longer over. So a park records the
 * quota it was made under in the job's hash (`hrTenantPark`, written by the move itself,
 * lua/redelay-11.lua), and a worker whose config gives the tenant more brings its parked jobs back
 * (lane-return.ts `promoteRaisedTenantParks`, at its start): they ask the bucket again under the new quota, and
 * are parked again, at its spacing, if the tenant is still over it.
 *
 * ```ts
 * await returnToLane(redis, prefix, 'normal', id, token, { delayMs, tenantPark: { tenant: 'acme', tpm: 2_000 } });
 * const promoted = await promoteRaisedTenantParks(redis, prefix, 'normal', (tenant) => config.tenants.overrides[tenant]?.tpm ?? config.tenants.default.tpm);
 * ```
 */

/** The tenant a job was parked for, and its tokens/min quota then. */
export interface TenantPark {
  tenant: string;
  tpm: number;
}

/** The job hash's field that says a delayed job is parked behind its tenant's quota. */
export const TENANT_PARK_FIELD = 'hrTenantPark';

/** The mark as redelay-11.lua stores it: `<tenant>|<tpm>` (the tpm last: a tenant id may hold '|'). */
export function tenantParkMark(park: TenantPark): string {
  return `${park.tenant}|${park.tpm}`;
}

/** The park a job hash's mark records, or undefined for a mark this version cannot read. */
export function parseTenantParkMark(mark: string): TenantPark | undefined {
  const at = mark.lastIndexOf('|');
  const tpm = Number(mark.slice(at + 1));
  return at > 0 && Number.isFinite(tpm) ? { tenant: mark.slice(0, at), tpm } : undefined;
}
