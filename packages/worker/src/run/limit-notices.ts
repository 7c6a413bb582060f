/**
 * Tells the operator, once per pool and dimension, that the config sets a limit above the one the
 * provider announces in its headers. The bucket already paces by the provider's (acquire.lua's
 * `limitOf`), so this is about the config being wrong (a tier copied from the docs, a limit the
 * provider lowered), not about what the fleet does: nothing else would show it but the
 * dashboard's capacity reading "learned".
 */
import { POOL_DIMENSIONS, type Logger, type Observed, type PoolLimits } from '@headroom/queue';

export class LimitNotices {
  readonly #told = new Set<string>();

  constructor(private readonly logger: Logger) {}

  check(pool: string, limits: PoolLimits, observed: Observed): void {
    for (const dimension of POOL_DIMENSIONS) {
      const configured = limits[dimension];
      const announced = observed[dimension]?.limit;
      if (configured === undefined || announced === undefined || announced <= 0 || configured <= announced) continue;
      const key = `${pool}\n${dimension}`;
      if (this.#told.has(key)) continue;
      this.#told.add(key);
      this.logger.warn(
        { pool, dimension, configured, announced },
        `the config's ${dimension} limit for pool ${pool} (${configured}) is above what the provider announces (${announced}): the fleet paces by the provider's; correct the config`,
      );
    }
  }
}
