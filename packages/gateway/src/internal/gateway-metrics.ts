/**
 * The Prometheus metrics a gateway process exports (docs/metrics.md), served on
 * `gateway.metricsPort`: what its clients were answered, by route, status and client key, and
 * how long the answers took. What happened to the jobs behind them is the workers' and the
 * dashboard's to say. One registry per process, so an embedded gateway never collides with the
 * host application's own metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PROCESS_METRICS_PREFIX } from '@headroom/queue';

/** The routes a request is counted under: the endpoints, and `other` for anything else (404s), so the label stays bounded. */
export type RouteLabel = 'messages' | 'count_tokens' | 'chat_completions' | 'responses' | 'input_tokens' | 'models' | 'healthz' | 'other';

/** nginx's code for a request whose client left before any answer was sent. */
export const CLIENT_CLOSED = '499';

/** What one request was, as it is counted once its response is done. */
export interface RequestRecord {
  route: RouteLabel;
  /** The client key's name from the config; '' before (or without) authentication. */
  key: string;
  /** The call asked for a streamed answer. */
  stream: boolean;
  /** The status sent, or `CLIENT_CLOSED`. */
  status: string;
  seconds: number;
  /** A streamed answer: from the request to its first byte (the head goes out with the first event). */
  firstByteSeconds?: number | undefined;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class GatewayMetrics {
  readonly registry = new Registry();

  readonly requests = new Counter({
    name: 'headroom_gateway_requests_total',
    help: 'Requests answered, by route, status sent ("499": the client left first) and client key name.',
    labelNames: ['route', 'status', 'key'] as const,
    registers: [this.registry],
  });

  readonly duration = new Histogram({
    name: 'headroom_gateway_request_duration_seconds',
    help: 'From the request to the end of its answer (a stream: its last event), by route and whether it streamed.',
    labelNames: ['route', 'stream'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly firstByte = new Histogram({
    name: 'headroom_gateway_stream_first_byte_seconds',
    help: "A streamed answer's time to its first byte, which carries the provider's first event.",
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  /** `inFlight`: the server's own count, read at each scrape rather than kept twice. */
  constructor(opts: { defaultMetrics?: boolean; inFlight: () => number }) {
    new Gauge({
      name: 'headroom_gateway_requests_in_flight',
      help: 'Requests being handled now (streams included).',
      registers: [this.registry],
      collect() {
        this.set(opts.inFlight());
      },
    });
    if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: PROCESS_METRICS_PREFIX });
  }

  record(r: RequestRecord): void {
    this.requests.inc({ route: r.route, status: r.status, key: r.key });
    this.duration.observe({ route: r.route, stream: String(r.stream) }, r.seconds);
    if (r.firstByteSeconds !== undefined) this.firstByte.observe({ route: r.route }, r.firstByteSeconds);
  }
}
