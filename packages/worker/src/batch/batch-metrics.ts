/**
 * The batcher's own Prometheus series, registered on the worker's registry beside the job, cost
 * (`batch="true"`) and token counters that batch results share with interactive ones.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export class BatchMetrics {
  readonly leader: Gauge;
  readonly parkedJobs: Gauge;
  readonly batches: Counter<'provider' | 'model' | 'event'>;

  constructor(registry: Registry) {
    this.leader = new Gauge({
      name: 'headroom_batch_leader',
      help: '1 while this process is the fleet\'s batcher leader.',
      registers: [registry],
    });
    this.parkedJobs = new Gauge({
      name: 'headroom_batch_jobs_held',
      help: 'BATCH jobs this leader holds in claims (gathering, submitting or parked with a provider batch).',
      registers: [registry],
    });
    this.batches = new Counter({
      name: 'headroom_batches_total',
      help: 'Provider batches by event: submitted, found (after a lost answer), ended, rejected, duplicate_canceled, unreadable (given up past its 24 h window).',
      labelNames: ['provider', 'model', 'event'] as const,
      registers: [registry],
    });
  }
}
