import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * The gateway's Prometheus metrics, in a registry of its own (one per app, so several gateways in
 * one process never mix). Labels carry team, model, endpoint, upstream and status: never a key.
 */

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

export class Metrics {
  readonly registry = new Registry()

  readonly requests = new Counter({
    name: 'tollgate_requests_total',
    help: 'Proxied requests by team, model, endpoint and status.',
    labelNames: ['team', 'model', 'endpoint', 'status'] as const,
    registers: [this.registry],
  })

  readonly duration = new Histogram({
    name: 'tollgate_request_duration_seconds',
    help: 'Whole request duration, to the end of the answer (streams included).',
    labelNames: ['endpoint', 'stream'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })

  readonly timeToFirstByte = new Histogram({
    name: 'tollgate_time_to_first_byte_seconds',
    help: 'From the request arriving to the first byte of the answer going out.',
    labelNames: ['endpoint', 'stream'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })

  readonly upstreamLatency = new Histogram({
    name: 'tollgate_upstream_latency_seconds',
    help: 'From sending a request upstream to its response headers.',
    labelNames: ['upstream', 'status'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  })

  readonly gatewayOverhead = new Histogram({
    name: 'tollgate_gateway_overhead_seconds',
    help: 'Time spent in the gateway before the upstream call and after its headers (auth, admission, forwarding).',
    labelNames: ['endpoint'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  })

  readonly tokens = new Counter({
    name: 'tollgate_tokens_total',
    help: 'Tokens by team, model and kind (prompt or completion); estimated ones included.',
    labelNames: ['team', 'model', 'kind'] as const,
    registers: [this.registry],
  })

  readonly rejections = new Counter({
    name: 'tollgate_rejections_total',
    help: 'Requests refused by a limit, by kind of limit.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  })

  readonly streamsOpen = new Gauge({
    name: 'tollgate_streams_open',
    help: 'Streams being answered right now.',
    registers: [this.registry],
  })

  readonly keyEvents = new Counter({
    name: 'tollgate_upstream_key_events_total',
    help: 'Key pool events by upstream: cooldown (a 429), refused (a 401/403), exhausted (every key at its budget).',
    labelNames: ['upstream', 'event'] as const,
    registers: [this.registry],
  })

  readonly redisErrors = new Counter({
    name: 'tollgate_redis_errors_total',
    help: 'Redis connection errors.',
    registers: [this.registry],
  })

  readonly usageBuffer = new Gauge({
    name: 'tollgate_usage_buffer_size',
    help: 'Usage records waiting in memory for Redis.',
    registers: [this.registry],
  })

  readonly usageDropped = new Gauge({
    name: 'tollgate_usage_buffer_dropped_total',
    help: 'Usage records dropped because the buffer was full, since start.',
    registers: [this.registry],
  })

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'tollgate_' })
  }
}
