/**
 * `headroom.config.yaml`: one file for the whole fleet, validated with zod. Secrets never live in
 * it: it names the environment variables that hold them.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import type { ThrottleParams } from './bucket-types.js';
import { ConfigError, type Issue } from './errors.js';
import { toIssues } from './internal/zod-issues.js';
import { PREFIX_PATTERN } from './keys.js';
import { INTERACTIVE_LANES, LANE_DEFAULTS, LANES, type Lane } from './lanes.js';
import { PROVIDERS, TenantId } from './job.js';
import { OUTPUT_COUNTINGS, outputReservationIssues } from './output-counting.js';
import { urlHasPassword } from './redaction.js';

/** The shortest `dispatch.lockMs` (see there). */
export const MIN_LOCK_MS = 1_000;

/** A provider's call bounds (`providers.<p>`); the adapters take them as they are when built without a config. */
export const PROVIDER_DEFAULTS = {
  timeoutMs: 600_000,
  /** Eight of Anthropic's ~15 s pings missed in a row; an OpenAI stream between tokens is silent for well under a second. */
  streamIdleMs: 120_000,
  streamTimeoutMs: 3_600_000,
} as const;

const positiveInt = z.int({ error: 'expected a positive integer' }).positive({ error: 'expected a positive integer' });
/**
 * An integer within bounds, every refusal stating the whole rule. One `{ error }` on the schema
 * would also stand in for the bounds' own messages, so `positiveInt.max(100_000)` said "expected
 * a positive integer, got 200000".
 */
function intIn(min: number, max?: number) {
  const rule = max === undefined ? `expected an integer of at least ${min}` : `expected an integer from ${min} to ${max}`;
  const atLeast = z.int({ error: rule }).min(min, { error: rule });
  return max === undefined ? atLeast : atLeast.max(max, { error: rule });
}
/** A TCP port (0: any free one, where the setting allows it). */
const port = (min: 0 | 1) => intIn(min, 65535);
const nonNegativeInt = z.int({ error: 'expected a non-negative integer' }).nonnegative({ error: 'expected a non-negative integer' });
const fraction = z.number({ error: 'expected a number from 0 to 1' }).min(0, { error: 'expected a number from 0 to 1' }).max(1, { error: 'expected a number from 0 to 1' });
const envName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, { error: 'expected an environment variable name like MY_API_KEY' });
const dollars = z.number({ error: 'expected a price in USD per million tokens' }).nonnegative({ error: 'expected a price in USD per million tokens' });

export const ModelLimits = z.strictObject({
  rpm: positiveInt.optional(),
  /** Anthropic: input tokens/min (cache reads excluded). */
  itpm: positiveInt.optional(),
  /** Anthropic: output tokens/min. */
  otpm: positiveInt.optional(),
  /** OpenAI: tokens/min (input + max output). */
  tpm: positiveInt.optional(),
  /**
   * Seconds of quota the pool's bucket holds in each dimension (its capacity: limit * burst / 60).
   * Over any window of W seconds the fleet sends at most limit * (burst + W) / 60. Lower it for a
   * provider that enforces its per-minute limit over shorter intervals; a request larger than
   * what a lane may draw from the capacity fails NEVER_FITS. @default 60 (the providers' own
   * bucket: one minute's quota)
   */
  burst: z.number({ error: 'expected a number of seconds from 1 to 60' }).min(1, { error: 'expected a number of seconds from 1 to 60' }).max(60, { error: 'expected a number of seconds from 1 to 60' }).default(60),
});
export type ModelLimits = z.infer<typeof ModelLimits>;

export const ModelConfig = z.strictObject({
  provider: z.enum(PROVIDERS, { error: 'expected "anthropic" or "openai"' }),
  /** Models that share one provider limit share a pool. @default the model name */
  pool: z.string().regex(/^[\w.:-]{1,64}$/, { error: 'expected 1-64 letters, digits, . : _ -' }).optional(),
  /** Omitted dimensions are learned from the providers' limit headers. */
  limits: ModelLimits.default({ burst: 60 }),
  pricing: z
    .strictObject({
      inputPerMTok: dollars,
      outputPerMTok: dollars,
      cacheReadPerMTok: dollars.optional(),
      cacheWritePerMTok: dollars.optional(),
      cacheWrite1hPerMTok: dollars.optional(),
    })
    .optional(),
  /** Models tried next, in order, when this one is cooling down, broken, or too slow to free up. */
  fallback: z.array(z.string().min(1)).default([]),
  /**
   * The most output the model produces in one answer: what an OpenAI request that sets neither
   * `max_completion_tokens` nor `max_tokens` reserves against tokens/min (per choice), as OpenAI
   * counts such a request itself. Without it such a request is refused for this model.
   */
  maxOutputTokens: z.int({ error: 'expected a positive integer' }).positive({ error: 'expected a positive integer' }).optional(),
  /** How the provider charges output against its limit when a call starts. @default max_tokens (both providers) */
  outputCounting: z.enum(OUTPUT_COUNTINGS, { error: 'expected "max_tokens" or "actual"' }).optional(),
});
export type ModelConfig = z.infer<typeof ModelConfig>;

const LaneConfig = (lane: Lane) =>
  z
    .strictObject({
      /** Jobs not yet started. */
      cap: positiveInt.default(LANE_DEFAULTS[lane].cap),
      /** Bytes of job data of the lane's unfinished jobs (waiting or running) together. */
      maxBytes: positiveInt.default(LANE_DEFAULTS[lane].maxBytes),
      weight: z.number({ error: 'expected a number of at least 0' }).nonnegative({ error: 'expected a number of at least 0' }).default(LANE_DEFAULTS[lane].weight),
      reserve: fraction.default(LANE_DEFAULTS[lane].reserve),
      /** The share of each pool a queued-up tenant's jobs leave for a tenant with nothing queued (fair lanes). */
      fairReserve: fraction.default(LANE_DEFAULTS[lane].fairReserve),
      maxWaitMs: positiveInt.default(LANE_DEFAULTS[lane].maxWaitMs),
      retryReserve: fraction.lt(1, { error: 'expected a number from 0 to below 1' }).default(LANE_DEFAULTS[lane].retryReserve),
      /** The lane's retries are not held by the retry budget while the model's throttle is closed (docs/faults-brownout.md). @default true for CRITICAL */
      retryBudgetExempt: z.boolean({ error: 'expected true or false' }).default(LANE_DEFAULTS[lane].retryBudgetExempt),
      /**
       * `tenants`: jobs are served in start-time fair order by tokens across the tenants with work
       * waiting (docs/architecture.md, "Fair sharing inside a lane"); `fifo`: in enqueue order.
       * @default tenants (BATCH: fifo)
       */
      fairness: z.enum(['tenants', 'fifo']).default(LANE_DEFAULTS[lane].fairness),
    })
    .refine((l) => l.reserve + l.fairReserve < 1, { error: 'reserve + fairReserve must stay below 1 (the share of a pool the lane leaves untouched)', path: ['fairReserve'] })
    .default({ ...LANE_DEFAULTS[lane] });

const ProviderConfig = (defaultKeyEnv: string) =>
  z
    .strictObject({
      /**
       * http(s) only: `z.url` alone took `localhost:8000` (scheme "localhost"), and every job then
       * spent its attempts on "fetch failed: unknown scheme" before failing RETRIES_EXHAUSTED.
       */
      baseURL: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL, e.g. http://localhost:8000' }).optional(),
      apiKeyEnv: envName.default(defaultKeyEnv),
      /**
       * A plain call's whole life; a streamed call's wait for its head and first event (an OpenAI
       * reasoning model streams nothing until its first token, as long as a plain call waits for
       * its answer). The SDKs refuse long non-streaming calls without one.
       */
      timeoutMs: positiveInt.default(PROVIDER_DEFAULTS.timeoutMs),
      /**
       * The longest silence (no byte: no event, no ping) a stream may keep once its first event
       * came; a stalled stream is cut then, not at its whole life's bound. Anthropic sends `ping`
       * events through a stream's quiet stretches, and OpenAI an event per token once the first
       * has come.
       */
      streamIdleMs: positiveInt.default(PROVIDER_DEFAULTS.streamIdleMs),
      /**
       * A streamed call's whole life: a steady stream may run past `timeoutMs` (64k output
       * tokens at 50/s take 21 min), but it stays bounded, as the in-flight accounting needs.
       * Left out, an hour, or `timeoutMs` when that is longer: a config written before this
       * setting, with a `timeoutMs` over an hour, reads as it did.
       */
      streamTimeoutMs: positiveInt.optional(),
    })
    .transform((p) => ({ ...p, streamTimeoutMs: p.streamTimeoutMs ?? Math.max(PROVIDER_DEFAULTS.streamTimeoutMs, p.timeoutMs) }))
    // Compared only once each is a valid number: `streamTimeoutMs: 0` is one mistake, not three.
    .refine((p) => p.streamTimeoutMs >= p.timeoutMs, {
      error: "streamTimeoutMs must be at least timeoutMs: a stream's head and first output may take as long as a plain call's answer",
      path: ['streamTimeoutMs'],
      when: (payload) => payload.issues.length === 0,
    })
    .refine((p) => p.streamIdleMs < p.streamTimeoutMs, {
      error: 'streamIdleMs must be below streamTimeoutMs: a stream silent for as long as its whole life is bounded by that life already',
      path: ['streamIdleMs'],
      when: (payload) => payload.issues.length === 0,
    })
    .default({ apiKeyEnv: defaultKeyEnv, ...PROVIDER_DEFAULTS });

const TenantQuota = z.strictObject({
  /** Tokens/min (input + output) in each pool: a tenant has its own bucket in every pool it draws from. */
  tpm: positiveInt.optional(),
  /** Jobs not yet finished (waiting, delayed or running) per lane at once. */
  maxQueued: positiveInt.optional(),
  /** Share of a fair lane's tokens against other tenants with work waiting (1 = equal). @default 1 */
  weight: z.number({ error: 'expected a number from 0.01 to 100' }).min(0.01, { error: 'expected a number from 0.01 to 100' }).max(100, { error: 'expected a number from 0.01 to 100' }).optional(),
});

const DASHBOARD_ALERT_DEFAULTS = {
  enabled: true,
  intervalMs: 15_000,
  utilization: 0.8,
  forMs: 120_000,
  rate429: 0.005,
  rate429WindowMinutes: 5,
  webhookUrlEnv: 'HEADROOM_ALERT_WEBHOOK_URL',
};

/** Alerts the dashboard process evaluates: a log event, and a webhook POST when one is set. */
const DashboardAlerts = z.strictObject({
  enabled: z.boolean().default(true),
  /** How often the rules are evaluated. */
  intervalMs: positiveInt.default(15_000),
  /** A bucket dimension at or above this fraction of its capacity... */
  utilization: fraction.default(0.8),
  /** ...for this long fires an alert (once per episode; it resolves when the dimension drops below). */
  forMs: nonNegativeInt.default(120_000),
  /** 429s / provider calls over the window above this fires an alert. */
  rate429: fraction.default(0.005),
  rate429WindowMinutes: intIn(1, 120).default(5),
  /** The env variable holding the webhook URL (webhook URLs carry tokens); unset = log only. */
  webhookUrlEnv: envName.default('HEADROOM_ALERT_WEBHOOK_URL'),
});

/** Lane names as the gateway's `headroom-priority` header and its keys write them. */
const gatewayPriority = z.enum(['critical', 'high', 'normal', 'low'], { error: 'expected critical, high, normal or low' });

/** One client key of the gateway. Its value lives in the environment; the file names the variable. */
export const GatewayKeyConfig = z.strictObject({
  /** The environment variable holding the key a client sends (`x-api-key` or `Authorization: Bearer`). */
  keyEnv: envName,
  /** Every request made with this key runs as this tenant; a header cannot change it. */
  tenant: TenantId.optional(),
  /** The lane of a request without `headroom-priority`. @default 'normal' */
  defaultPriority: gatewayPriority.default('normal'),
  /** The highest lane this key may ask for; a higher `headroom-priority` runs at this one. @default 'critical' */
  maxPriority: gatewayPriority.default('critical'),
});
export type GatewayKeyConfig = z.infer<typeof GatewayKeyConfig>;

const GATEWAY_DEFAULTS = {
  port: 8080,
  host: '0.0.0.0',
  keys: {},
  maxBodyBytes: 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  keepAliveTimeoutMs: 65_000,
  maxWaitMs: 60_000,
  slowClientMs: 30_000,
  streamPingMs: 15_000,
  shutdownGraceMs: 30_000,
  heartbeatMs: 5_000,
  metricsHost: '127.0.0.1',
  metricsTokenEnv: 'HEADROOM_METRICS_TOKEN',
};

const GatewayConfig = z.strictObject({
  port: port(0).default(8080),
  host: z.string().default('0.0.0.0'),
  /** Client keys by name (the name shows in logs; the value never does). */
  keys: z.record(z.string().regex(/^[\w.-]{1,64}$/, { error: 'expected a key name of 1-64 letters, digits, . _ -' }), GatewayKeyConfig).default({}),
  /** Largest request body; a larger one gets 413 before it is read to the end. */
  maxBodyBytes: positiveInt.default(1024 * 1024),
  /** Largest request head (all headers together); a larger one gets 431. */
  maxHeaderBytes: intIn(1024).default(16 * 1024),
  /** The request head must arrive within this (a client trickling headers is cut off). */
  headersTimeoutMs: positiveInt.default(10_000),
  /** The request body must arrive within this once the head has (408 otherwise). */
  bodyTimeoutMs: positiveInt.default(30_000),
  /**
   * How long an idle client connection is kept open for its next request. Longer than the SDKs'
   * pools keep one (undici's, the openai SDK's, ~4-60 s): a server that closes first races a
   * client reusing the socket, and the client gets ECONNRESET (Node's own default is 5 s).
   */
  keepAliveTimeoutMs: positiveInt.default(65_000),
  /**
   * How long a request may wait in its lane for its call to start, unless `headroom-max-wait-ms`
   * says otherwise; past it the job is cancelled and the client told to retry (529 / 503).
   */
  maxWaitMs: positiveInt.default(60_000),
  /** A streamed answer whose client reads nothing for this long is cut off (and its call stopped). */
  slowClientMs: positiveInt.default(30_000),
  /**
   * A streamed answer silent this long gets the provider's own keep-alive (Anthropic's `ping`
   * event, an SSE comment for OpenAI), and again each time the silence lasts as long: a model
   * thinking, or a rerun taking over from a worker that died, can leave a stream quiet for tens of
   * seconds, and proxies in between (nginx, load balancers) close a connection idle for 60 s.
   */
  streamPingMs: positiveInt.default(15_000),
  /**
   * On SIGTERM (`close()`) the gateway takes no new connection and answers the calls it holds for
   * up to this long; then the rest are cut and their jobs cancelled.
   */
  shutdownGraceMs: positiveInt.default(30_000),
  /**
   * How often the gateway beats into the fleet's `gateways` hash; each beat vouches for it for three
   * of these. A gateway killed (SIGKILL, OOM) is known gone once its last beat lapses, and the
   * workers then withdraw the jobs it waited on: shorter finds it sooner, and a gateway whose beats
   * stall longer than that (a blocked event loop, Redis out of its reach) loses its queued calls.
   */
  heartbeatMs: intIn(100).default(5_000),
  /** Serve /metrics, /healthz and /readyz on this port, apart from the client-facing one. */
  metricsPort: port(0).optional(),
  /** The address that server binds (as `dispatch.metricsHost`). @default '127.0.0.1' */
  metricsHost: z.string().min(1).default('127.0.0.1'),
  /** The env variable holding the bearer token /metrics then requires (as `dispatch.metricsTokenEnv`). */
  metricsTokenEnv: envName.default('HEADROOM_METRICS_TOKEN'),
});

/** What a YAML file whose top level is a list or a scalar is told. */
const NOT_A_MAPPING = 'expected the config: a mapping of sections (models:, lanes:, dispatch:, ...)';

export const HeadroomConfig = z
  .strictObject({
    redis: z
      .strictObject({
        /** Used when the `urlEnv` variable is unset. No password here: put it in the env variable. */
        url: z.string().regex(/^rediss?(-cluster)?:\/\//, { error: 'expected a redis://, rediss://, redis-cluster:// or rediss-cluster:// URL' }).optional(),
        urlEnv: envName.default('REDIS_URL'),
        prefix: z.string({ error: 'expected 1-32 letters, digits, _ or -' }).regex(PREFIX_PATTERN, { error: 'expected 1-32 letters, digits, _ or -' }).default('hr'),
      })
      .default({ urlEnv: 'REDIS_URL', prefix: 'hr' }),
    providers: z
      .strictObject({
        anthropic: ProviderConfig('ANTHROPIC_API_KEY'),
        openai: ProviderConfig('OPENAI_API_KEY'),
      })
      .default({
        anthropic: { apiKeyEnv: 'ANTHROPIC_API_KEY', ...PROVIDER_DEFAULTS },
        openai: { apiKeyEnv: 'OPENAI_API_KEY', ...PROVIDER_DEFAULTS },
      }),
    models: z.record(z.string().regex(/^[\w.:-]{1,64}$/, { error: 'expected a model name of 1-64 letters, digits, . : _ -' }), ModelConfig, {
      error: 'required: the models the fleet serves, each under its name (models: { claude-sonnet-4-6: { provider: anthropic } })',
    }),
    lanes: z
      .strictObject(Object.fromEntries(LANES.map((l) => [l, LaneConfig(l)])) as { [L in Lane]: ReturnType<typeof LaneConfig> })
      .default(Object.fromEntries(LANES.map((l) => [l, { ...LANE_DEFAULTS[l] }])) as never),
    limits: z
      .strictObject({ maxJobBytes: positiveInt.default(1024 * 1024) })
      .default({ maxJobBytes: 1024 * 1024 }),
    dispatch: z
      .strictObject({
        /** Provider calls in flight per worker process. */
        concurrency: positiveInt.default(32),
        /** `strict`: always the highest non-empty lane; `weighted`: smooth weighted round-robin. */
        order: z.enum(['strict', 'weighted']).default('strict'),
        /** Output reservation: the request's max_tokens, or a learned p95 of actual output (only for models whose provider counts actual output: see output-counting.ts). */
        outputReservation: z.enum(['max_tokens', 'p95']).default('max_tokens'),
        /**
         * A running job's lock; a worker that dies (SIGKILL) gives its jobs back after this. The
         * dispatcher renews it every max(500 ms, lockMs / 3): a lock under a second outlives a
         * renewal by less than half a second, so any pause of the worker's event loop (a GC, a
         * slow Redis reply) lets it lapse and the job still running runs again elsewhere. It may
         * be shorter than `stalledIntervalMs`: BullMQ's stalled check moves a job only once its
         * lock key is gone (moveStalledJobsToWait), so the interval only sets how soon after.
         */
        lockMs: positiveInt.min(MIN_LOCK_MS, { error: `expected at least ${MIN_LOCK_MS} (a shorter lock, renewed every max(500 ms, lockMs / 3), lapses on an ordinary pause of the worker, and the job still running runs again elsewhere)` }).default(30_000),
        /** How often each worker looks for jobs whose lock expired. */
        stalledIntervalMs: positiveInt.default(15_000),
        /** SIGTERM: how long in-flight calls may finish before they are handed back. */
        shutdownGraceMs: positiveInt.default(30_000),
        /** After an empty fetch a lane is not polled again for this long (pickup latency bound). */
        emptyLanePollMs: positiveInt.default(20),
        /**
         * How an idle worker learns of new work: `block` on the lanes' BullMQ markers (woken within
         * a round trip), or `poll` with sleeps of up to 100 ms (a Redis proxy that refuses blocking
         * commands; a Redis Cluster always polls).
         */
        idleWake: z.enum(['block', 'poll'], { error: 'expected block or poll' }).default('block'),
        /** Serve /metrics and /healthz from each worker on this port. */
        metricsPort: port(0).optional(),
        /**
         * The address that server binds: loopback by default, so a worker's metrics are not
         * open to its whole network unless asked (a pod sets 0.0.0.0 for its probes and scrapes).
         * @default '127.0.0.1'
         */
        metricsHost: z.string().min(1).default('127.0.0.1'),
        /**
         * The env variable holding a bearer token that /metrics then requires (`Authorization:
         * Bearer <token>`); /healthz and /readyz stay open for probes. Unset variable = no auth.
         * @default 'HEADROOM_METRICS_TOKEN'
         */
        metricsTokenEnv: envName.default('HEADROOM_METRICS_TOKEN'),
      })
      .default({
        concurrency: 32,
        order: 'strict',
        outputReservation: 'max_tokens',
        lockMs: 30_000,
        stalledIntervalMs: 15_000,
        shutdownGraceMs: 30_000,
        emptyLanePollMs: 20,
        metricsHost: '127.0.0.1',
        metricsTokenEnv: 'HEADROOM_METRICS_TOKEN',
        idleWake: 'block',
      }),
    retry: z
      .strictObject({
        maxAttempts: positiveInt.default(6),
        baseDelayMs: positiveInt.default(500),
        maxDelayMs: positiveInt.default(30_000),
        /**
         * Backoff base after a failure that says the model is unhealthy (5xx, 529, no answer).
         * Short: the fleet-wide retry budget, not each job's backoff, bounds the load retries add.
         */
        unhealthyBaseDelayMs: positiveInt.default(100),
        /**
         * How long a job may ride out a model's outage: a call that fails as a dead model's do
         * while other jobs' calls to it fail too costs the job no attempt, for this long from the
         * job's first such failure (the worker's failed-call.ts, outage-evidence.ts).
         */
        outageGraceMs: positiveInt.default(300_000),
        budget: z
          .strictObject({
            /** Retries of a model that fail, fleet-wide, stay within this fraction of its first calls over the window (a served retry gives its place back). */
            ratio: fraction.default(0.2),
            /** Time constant of the budget's sliding (exponentially weighted) window. */
            windowMs: positiveInt.default(10_000),
            /** Retries always allowed per second, so a model with little traffic can still retry. */
            minPerSecond: z.number({ error: 'expected a non-negative number' }).nonnegative({ error: 'expected a non-negative number' }).default(1),
          })
          .default({ ratio: 0.2, windowMs: 10_000, minPerSecond: 1 }),
      })
      .default({ maxAttempts: 6, baseDelayMs: 500, maxDelayMs: 30_000, unhealthyBaseDelayMs: 100, outageGraceMs: 300_000, budget: { ratio: 0.2, windowMs: 10_000, minPerSecond: 1 } }),
    /**
     * The fleet-wide adaptive throttle per model (lua/includes/model-throttle.lua): calls follow
     * the model's recent success ratio, so a degraded model keeps serving at the rate it can and
     * a dead one gets probes.
     */
    throttle: z
      .strictObject({
        /** Admit up to k times the calls the model still serves: 2 keeps a model that serves half its calls at full rate. */
        k: z.number({ error: 'expected a number of at least 1' }).min(1, { error: 'expected a number of at least 1' }).default(2),
        /** Time constant of the success ratio's sliding (exponentially weighted) window; at least 2 x probeIntervalMs. */
        windowMs: positiveInt.default(2_000),
        /** A dead model is called once per this long, fleet-wide. */
        probeIntervalMs: positiveInt.default(1_000),
      })
      .default({ k: 2, windowMs: 2_000, probeIntervalMs: 1_000 }),
    /**
     * Retired: the per-process consecutive-failure breaker gave way to the fleet-wide throttle
     * (a dead model is its limit). Still accepted so older config files load; ignored.
     */
    breaker: z
      .strictObject({
        failureThreshold: positiveInt.optional(),
        openMs: positiveInt.optional(),
      })
      .optional(),
    shedding: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** Pressure (0-1) at which new LOW jobs are refused. */
        lowAt: fraction.default(0.85),
        /** NORMAL is only delayed unless this is set. */
        shedNormal: z.boolean().default(false),
        /** A backlog that takes longer than this to drain at the refill rate counts as full pressure. */
        horizonMs: positiveInt.default(60_000),
      })
      .default({ enabled: true, lowAt: 0.85, shedNormal: false, horizonMs: 60_000 }),
    tenants: z
      // An override is found by the tenant a job names: a name no job can carry would never apply.
      .strictObject({ default: TenantQuota.default({}), overrides: z.record(TenantId, TenantQuota).default({}) })
      .default({ default: {}, overrides: {} }),
    batch: z
      .strictObject({
        /** Run a batcher in every worker (one of them leads); off = BATCH jobs wait in their lane. */
        enabled: z.boolean().default(true),
        /** Requests per provider batch (also capped by each provider's own limit: 100,000 / 50,000). */
        maxRequests: intIn(1, 100_000).default(1000),
        /** A partial batch is submitted once its oldest job has waited this long. */
        maxWaitMs: positiveInt.default(60_000),
        /** How often each submitted batch's status is read. */
        pollIntervalMs: positiveInt.default(30_000),
        /** The leader's lease; a dead leader is replaced after at most this long. */
        leaseMs: intIn(1_000).default(15_000),
        /** Lock on each claimed or parked job, renewed by the leader; a fleet down longer hands the jobs back. */
        parkLockMs: intIn(10_000).default(3_600_000),
        /** Bound on one batch submission; a new leader waits this long past an unanswered submit before resubmitting. */
        submitTimeoutMs: intIn(1_000).default(120_000),
      })
      .default({ enabled: true, maxRequests: 1000, maxWaitMs: 60_000, pollIntervalMs: 30_000, leaseMs: 15_000, parkLockMs: 3_600_000, submitTimeoutMs: 120_000 }),
    dashboard: z
      .strictObject({
        port: port(1).default(3000),
        host: z.string().default('0.0.0.0'),
        /**
         * The names the dashboard is reached by (`headroom.internal.example.com`): requests with
         * another `Host`, and writes whose `Origin` is another site, are refused, so a page in an
         * operator's browser cannot reach it by DNS rebinding. Loopback names (127.0.0.1,
         * localhost, [::1]) are always accepted; empty = any Host unless `--local-only`.
         * @default []
         */
        hostnames: z.array(z.string().regex(/^[A-Za-z0-9.[\]:-]{1,253}$/, { error: 'expected a host name like headroom.example.com (a port may follow)' })).default([]),
        usernameEnv: envName.default('HEADROOM_DASHBOARD_USER'),
        passwordEnv: envName.default('HEADROOM_DASHBOARD_PASSWORD'),
        tokenEnv: envName.default('HEADROOM_DASHBOARD_TOKEN'),
        /**
         * Refuse Bull Board's writes (retry, promote, clean, remove, pause). On by default: a
         * retry sends a job to the provider again, and a dashboard reached by a foreign page
         * (DNS rebinding) must not be able to write. Set false to allow them; retries then go
         * through admission (the lane caps). @default true
         */
        readOnly: z.boolean().default(true),
        alerts: DashboardAlerts.default(DASHBOARD_ALERT_DEFAULTS),
      })
      .default({
        port: 3000,
        host: '0.0.0.0',
        hostnames: [],
        usernameEnv: 'HEADROOM_DASHBOARD_USER',
        passwordEnv: 'HEADROOM_DASHBOARD_PASSWORD',
        tokenEnv: 'HEADROOM_DASHBOARD_TOKEN',
        readOnly: true,
        alerts: DASHBOARD_ALERT_DEFAULTS,
      }),
    /** `headroom gateway`: the providers' wire formats over HTTP in front of the lanes. */
    gateway: GatewayConfig.default(GATEWAY_DEFAULTS),
  }, { error: NOT_A_MAPPING });
export type HeadroomConfig = z.infer<typeof HeadroomConfig>;
export type HeadroomConfigInput = z.input<typeof HeadroomConfig>;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const record = (v: unknown): Record<string, unknown> => (isRecord(v) ? v : {});
/** A raw value where the schema wants a number, else its default (the schema reports the rest). */
const numberOr = (v: unknown, fallback: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

/** Shown with up to two decimals, rounded down (it is a most). */
const most = (n: number): string => String(Math.floor(n * 100 + 1e-9) / 100);

/**
 * A model whose request limit leaves no lane room for one call: every call fails NEVER_FITS.
 * The bucket holds `rpm * burst / 60` requests and a lane may draw what its reserve leaves
 * (acquire.lua); every call draws exactly one request, so that much is certain at load. (Token
 * needs vary by request, so the token dimensions are left to the bucket's own NEVER_FITS.)
 */
function neverFitsIssues(name: string, limits: Record<string, unknown>, lanes: Record<string, unknown>): Issue[] {
  const rpm = limits.rpm;
  if (typeof rpm !== 'number' || rpm <= 0) return [];
  const burst = numberOr(limits.burst, 60);
  const capacity = (rpm * burst) / 60;
  const least = INTERACTIVE_LANES.map((lane) => ({ lane, reserve: Math.min(1, Math.max(0, numberOr(record(lanes[lane]).reserve, LANE_DEFAULTS[lane].reserve))) })).reduce((a, b) => (b.reserve < a.reserve ? b : a));
  const drawable = capacity * (1 - least.reserve);
  // acquire.lua's tolerance: a need fits up to 1e-6 over.
  if (drawable + 1e-6 >= 1) return [];
  const needBurst = Math.ceil(60 / (rpm * (1 - least.reserve)) - 1e-9);
  const fix = least.reserve >= 1 ? `lower lanes.${least.lane}.reserve` : needBurst <= 60 ? `raise burst to at least ${needBurst} (or rpm)` : 'raise rpm';
  return [
    {
      path: `models.${name}.limits`,
      message: `rpm ${rpm} x burst ${burst} / 60 = ${most(capacity)} requests fit in the pool's bucket, and even lane ${least.lane} (reserve ${least.reserve}, the least) may draw at most ${most(drawable)} of them: every call needs 1, so every call would fail NEVER_FITS; ${fix}`,
    },
  ];
}

/**
 * Checks that span fields (fallback targets, dimensions per provider, secrets in the file). They
 * run on the raw input, beside the schema, so one pass reports every problem in the file.
 */
function crossCheck(raw: unknown): Issue[] {
  const issues: Issue[] = [];
  const cfg = record(raw);
  const models = record(cfg.models);
  if (isRecord(cfg.models) && Object.keys(models).length === 0) {
    // Admission refuses every job for a model the fleet does not serve: such a worker could only
    // publish that nothing is served, over the fleet's models.
    issues.push({ path: 'models', message: 'lists no model: a fleet that serves no model refuses every job; list at least one' });
  }
  for (const [name, value] of Object.entries(models)) {
    const model = record(value);
    const limits = record(model.limits);
    const fallback = Array.isArray(model.fallback) ? model.fallback : [];
    fallback.forEach((next, i) => {
      if (typeof next !== 'string') return;
      const target = models[next];
      // The ladder is the model, then its fallbacks: a model twice on it is only called twice.
      const first = fallback.indexOf(next);
      if (next === name) {
        issues.push({ path: `models.${name}.fallback.${i}`, message: `"${next}" is the model itself, which the ladder already starts with` });
      } else if (first < i) {
        issues.push({ path: `models.${name}.fallback.${i}`, message: `"${next}" is already listed (fallback.${first})` });
      } else if (target === undefined) {
        issues.push({ path: `models.${name}.fallback.${i}`, message: `unknown model "${next}" (not under models)` });
      } else if (record(target).provider !== model.provider) {
        issues.push({ path: `models.${name}.fallback.${i}`, message: `"${next}" is a model of ${String(record(target).provider)}; a fallback must use the same provider (${String(model.provider)})` });
      } else if (model.provider === 'openai' && model.maxOutputTokens !== undefined && record(target).maxOutputTokens === undefined) {
        // Admission checks the output cap of the models a job names; a configured fallback is
        // the workers' to add, so a job without an output bound was admitted for the primary and
        // then could never run on this one (plan.ts skips it).
        issues.push({
          path: `models.${name}.fallback.${i}`,
          message: `"${next}" has no maxOutputTokens, so a request that sets no max_completion_tokens (the SDKs' default), which "${name}" serves, could never fall back to it: set models.${next}.maxOutputTokens`,
        });
      }
    });
    if (model.provider === 'openai' && (limits.itpm !== undefined || limits.otpm !== undefined)) {
      issues.push({ path: `models.${name}.limits`, message: 'OpenAI limits are rpm and tpm; itpm/otpm are Anthropic dimensions' });
    }
    if (model.provider === 'anthropic' && limits.tpm !== undefined) {
      issues.push({ path: `models.${name}.limits.tpm`, message: 'Anthropic limits are rpm, itpm and otpm; tpm is an OpenAI dimension' });
    }
    issues.push(...neverFitsIssues(name, limits, record(cfg.lanes)));
  }
  issues.push(...poolIssues(models));
  const throttle = record(cfg.throttle);
  const windowMs = typeof throttle.windowMs === 'number' ? throttle.windowMs : 2_000;
  const probeMs = typeof throttle.probeIntervalMs === 'number' ? throttle.probeIntervalMs : 1_000;
  if (windowMs < 2 * probeMs) {
    issues.push({ path: 'throttle.windowMs', message: `must be at least 2 x throttle.probeIntervalMs (${2 * probeMs}): a shorter window forgets a dead model between its probes` });
  }
  issues.push(...outputReservationIssues(record(cfg.dispatch).outputReservation, models));
  const retry = record(cfg.retry);
  const baseDelayMs = numberOr(retry.baseDelayMs, 500);
  const maxDelayMs = numberOr(retry.maxDelayMs, 30_000);
  // unhealthyBaseDelayMs only when set: its default (100) under a small maxDelayMs is just capped.
  for (const base of ['baseDelayMs', 'unhealthyBaseDelayMs'] as const) {
    if (base === 'unhealthyBaseDelayMs' && retry.unhealthyBaseDelayMs === undefined) continue;
    const value = base === 'baseDelayMs' ? baseDelayMs : numberOr(retry.unhealthyBaseDelayMs, 100);
    if (maxDelayMs < value) issues.push({ path: 'retry.maxDelayMs', message: `is below retry.${base} (${value}): every such backoff would be cut below its own base; raise maxDelayMs or lower ${base}` });
  }
  const lanes = record(cfg.lanes);
  if (record(cfg.dispatch).order === 'weighted' && INTERACTIVE_LANES.every((l) => numberOr(record(lanes[l]).weight, LANE_DEFAULTS[l].weight) === 0)) {
    issues.push({ path: 'lanes', message: 'every lane has weight 0, so dispatch.order "weighted" has no shares to give (the lanes would be taken in strict order): give the lanes weights, or set dispatch.order to "strict"' });
  }
  const rank = ['low', 'normal', 'high', 'critical'];
  for (const [name, value] of Object.entries(record(record(cfg.gateway).keys))) {
    const key = record(value);
    const def = rank.indexOf(typeof key.defaultPriority === 'string' ? key.defaultPriority : 'normal');
    const max = rank.indexOf(typeof key.maxPriority === 'string' ? key.maxPriority : 'critical');
    if (def >= 0 && max >= 0 && def > max) {
      issues.push({ path: `gateway.keys.${name}.defaultPriority`, message: `"${String(key.defaultPriority)}" is above the key's maxPriority "${String(key.maxPriority ?? 'critical')}"` });
    }
  }
  const redis = record(cfg.redis);
  if (typeof redis.url === 'string' && urlHasPassword(redis.url)) {
    const env = typeof redis.urlEnv === 'string' ? redis.urlEnv : 'REDIS_URL';
    issues.push({ path: 'redis.url', message: `contains a password: keep secrets out of the file and set ${env} instead` });
  }
  return issues;
}

/**
 * The models of one pool draw from one bucket, and each acquire paces it by the calling model's
 * limits: two sets of limits would measure one level against two capacities (and one provider's
 * headers against the other's dimensions).
 */
function poolIssues(models: Record<string, unknown>): Issue[] {
  const issues: Issue[] = [];
  const first = new Map<string, { name: string; provider: unknown; limits: string }>();
  const limitsOf = (model: Record<string, unknown>) => {
    const limits = record(model.limits);
    return JSON.stringify([limits.rpm, limits.itpm, limits.otpm, limits.tpm, limits.burst ?? 60].map((v) => v ?? null));
  };
  for (const [name, value] of Object.entries(models)) {
    const model = record(value);
    const pool = typeof model.pool === 'string' ? model.pool : name;
    const seen = first.get(pool);
    if (seen === undefined) {
      first.set(pool, { name, provider: model.provider, limits: limitsOf(model) });
    } else if (seen.provider !== model.provider) {
      issues.push({ path: `models.${name}.pool`, message: `pool "${pool}" holds ${String(seen.provider)} model "${seen.name}": a pool is one provider's limit` });
    } else if (seen.limits !== limitsOf(model)) {
      issues.push({ path: `models.${name}.limits`, message: `differ from those of "${seen.name}", which shares pool "${pool}": every model of a pool must have the same limits` });
    }
  }
  return issues;
}

/** Validates an already-parsed config object. Throws `ConfigError` listing every problem by path. */
export function parseConfig(raw: unknown, source = '(object)'): HeadroomConfig {
  const result = HeadroomConfig.safeParse(raw, { reportInput: true });
  const issues = [...(result.success ? [] : toIssues(result.error, { hideSecrets: true })), ...crossCheck(raw)];
  if (issues.length > 0 || !result.success) throw new ConfigError(source, issues);
  return result.data;
}

/** Reads and validates a YAML config file. */
export function loadConfig(path: string): HeadroomConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [{ path: '(file)', message: `cannot read: ${(err as Error).message}` }]);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const issues: Issue[] = doc.errors.map((e) => ({ path: `(yaml line ${e.linePos?.[0]?.line ?? '?'})`, message: e.message.split('\n')[0] ?? e.message }));
    throw new ConfigError(path, issues);
  }
  // YAML reads an empty file (or one of comments only) as null, which the schema would call "expected an object".
  if (doc.contents === null) throw new ConfigError(path, [{ path: '(file)', message: 'the file is empty (or holds only comments): it needs at least models:' }]);
  // Parsing checks syntax; building the value is where yaml refuses an alias bomb (a "billion
  // laughs" file, past its maxAliasCount) with a bare ReferenceError, which reached the CLI as a
  // crash with a stack trace (exit 1) instead of a config error (exit 2).
  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (err) {
    throw new ConfigError(path, [{ path: '(yaml)', message: `cannot be read: ${(err as Error).message}` }]);
  }
  return parseConfig(raw, path);
}

/** The bucket's throttle options, from the config's `throttle` and `retry.budget`. */
export function throttleParamsOf(config: HeadroomConfig): ThrottleParams {
  return { ...config.throttle, budget: { ...config.retry.budget } };
}

/** The tenant's tokens/min quota in each pool (its override's, else the default's), or undefined: none. */
export function tenantTpmOf(config: HeadroomConfig, tenant: string): number | undefined {
  return config.tenants.overrides[tenant]?.tpm ?? config.tenants.default.tpm;
}

/** The pool a model draws from. */
export function poolOf(config: HeadroomConfig, model: string): string {
  return config.models[model]?.pool ?? model;
}

/** The Redis URL the config points at: the env variable first, then the file's url. */
export function redisUrlOf(config: HeadroomConfig, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[config.redis.urlEnv] || config.redis.url;
}
