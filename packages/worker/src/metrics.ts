/**
 * The Prometheus metrics a worker process exports (documented in the README). One registry per
 * process, so an embedded worker never collides with the host application's own metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PROCESS_METRICS_PREFIX } from '@headroom/queue';

export class WorkerMetrics {
  readonly registry = new Registry();

  readonly jobs = new Counter({
    name: 'headroom_jobs_total',
    help: 'Jobs that ended, by lane and outcome (completed, failed, shed).',
    labelNames: ['lane', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly providerCalls = new Counter({
    name: 'headroom_provider_calls_total',
    help: 'Provider calls by provider, model and HTTP status ("network" when no response came).',
    labelNames: ['provider', 'model', 'status'] as const,
    registers: [this.registry],
  });

  readonly rateLimited = new Counter({
    name: 'headroom_provider_429_total',
    help: 'Rate-limit 429 responses from providers: traffic outside the fleet or a limit set too high (a spend cap is not counted).',
    labelNames: ['provider', 'model'] as const,
    registers: [this.registry],
  });

  readonly retries = new Counter({
    name: 'headroom_retries_total',
    help: 'Retries and fallbacks scheduled, by failure kind.',
    labelNames: ['provider', 'model', 'kind'] as const,
    registers: [this.registry],
  });

  readonly outageFailures = new Counter({
    name: 'headroom_outage_failures_total',
    help: "Failed calls that cost their job no attempt: other jobs' calls to the model were failing too (an outage, not the job's own failure).",
    labelNames: ['provider', 'model'] as const,
    registers: [this.registry],
  });

  readonly bucketWaits = new Counter({
    name: 'headroom_bucket_waits_total',
    help: 'Acquires told to wait, by pool, lane and the dimension that bound.',
    labelNames: ['pool', 'lane', 'reason'] as const,
    registers: [this.registry],
  });

  readonly tokens = new Counter({
    name: 'headroom_tokens_total',
    help: 'Tokens reported by providers, by dimension (input, output, cache_read, cache_creation).',
    labelNames: ['provider', 'model', 'dimension'] as const,
    registers: [this.registry],
  });

  readonly cost = new Counter({
    name: 'headroom_cost_usd_total',
    help: 'Estimated spend in USD from configured pricing (batch at 50%).',
    labelNames: ['provider', 'model', 'batch'] as const,
    registers: [this.registry],
  });

  readonly waitSeconds = new Histogram({
    name: 'headroom_job_wait_seconds',
    help: 'Time from enqueue to the start of the provider call that answered, by lane.',
    labelNames: ['lane'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [this.registry],
  });

  readonly callSeconds = new Histogram({
    name: 'headroom_provider_call_seconds',
    help: 'Provider call latency, by provider and model.',
    labelNames: ['provider', 'model'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [this.registry],
  });

  readonly inFlight = new Gauge({
    name: 'headroom_worker_in_flight',
    help: 'Jobs this worker process is running now.',
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: PROCESS_METRICS_PREFIX });
  }
}
