/**
 * The prefix each Headroom process (worker, gateway, dashboard) puts before prom-client's default
 * metrics, whose names already say what they are (`process_cpu_seconds_total`,
 * `nodejs_heap_size_used_bytes`): `headroom_process_cpu_seconds_total`,
 * `headroom_nodejs_heap_size_used_bytes`. It was `headroom_process_`, which doubled the word
 * (`headroom_process_process_cpu_seconds_total`, `headroom_process_nodejs_...`). One constant, so
 * the three processes' series never drift apart.
 */
export const PROCESS_METRICS_PREFIX = 'headroom_';
