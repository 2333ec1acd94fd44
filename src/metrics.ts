import { readFileSync } from 'node:fs'
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client'

/** The gateway's version, from its package.json (beside src/ and dist/ alike). */
export const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version

/**
 * The gateway's Prometheus metrics, in a registry of its own (one per app, so several gateways in
 * one process never mix). Labels carry team, model, endpoint, upstream and status: never a key.
 */

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

type LabelValue = string | number

/** One series of a histogram: its labels, a count per bucket (the last for values above every bound), sum and count. */
export class HistogramSeries {
  readonly counts: Float64Array
  sum = 0
  count = 0

  constructor(
    private readonly bounds: readonly number[],
    readonly labels: Record<string, LabelValue>,
  ) {
    this.counts = new Float64Array(bounds.length + 1)
  }

  /** Counts a value; one that is not a finite number is left out (prom-client would throw, on the request path). */
  observe(value: number): void {
    if (!Number.isFinite(value)) return
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.counts[i]!++
    this.sum += value
    this.count++
  }
}

/**
 * A histogram for the request path, read through prom-client's registry in prom-client's own
 * format (a test holds the two to the same text). prom-client's `Histogram.observe` builds a label
 * hash and a bucket key string on every call, about 400 ns against 24 ns here, four times per
 * request; with them off the gateway took 0.92x the CPU at 64 clients (bench/ab.ts). Here a
 * series is found by its label values through nested Maps, with no string made, and an
 * observation is an array increment.
 */
export class FastHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  /** Label values, level by level, to the series; and every series in the order they came. */
  private root = new Map<LabelValue, unknown>()
  private all: HistogramSeries[] = []

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    if (labelNames.length < 1 || labelNames.length > 2) throw new Error(`${name}: one or two labels`)
    // The registry reads a metric through name, get() and reset(): what this class has.
    registry.registerMetric(this as unknown as Metric)
  }

  /** The series of these label values, in the order of the label names (one or two of them). */
  series(a: LabelValue, b?: LabelValue): HistogramSeries {
    let found: HistogramSeries | undefined
    if (this.labelNames.length === 1) {
      found = this.root.get(a) as HistogramSeries | undefined
      if (found === undefined) this.root.set(a, (found = this.create([a])))
    } else {
      let level = this.root.get(a) as Map<LabelValue, HistogramSeries> | undefined
      if (level === undefined) this.root.set(a, (level = new Map()))
      found = level.get(b!)
      if (found === undefined) level.set(b!, (found = this.create([a, b!])))
    }
    return found
  }

  private create(values: LabelValue[]): HistogramSeries {
    const series = new HistogramSeries(this.buckets, Object.fromEntries(this.labelNames.map((n, i) => [n, values[i]!])))
    this.all.push(series)
    return series
  }

  async get() {
    const values: { labels: Record<string, LabelValue>; value: number; metricName: string; exemplar?: null }[] = []
    for (const s of this.all) {
      let cumulative = 0
      this.buckets.forEach((le, i) => {
        cumulative += s.counts[i]!
        values.push({ labels: { le, ...s.labels }, value: cumulative, metricName: `${this.name}_bucket`, exemplar: null })
      })
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${this.name}_bucket`, exemplar: null })
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` })
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }

  reset(): void {
    this.root = new Map()
    this.all = []
  }
}

/** `tollgate_<name>_buffer_size` and `tollgate_<name>_buffer_dropped_total`. */
function bufferMetrics(registry: Registry, name: string, what: string) {
  return {
    size: new Gauge({ name: `tollgate_${name}_buffer_size`, help: `${what} waiting in memory for Redis.`, registers: [registry] }),
    dropped: new Counter({
      name: `tollgate_${name}_buffer_dropped_total`,
      help: `${what} dropped because their buffer was full, since start.`,
      registers: [registry],
    }),
  }
}

export class Metrics {
  readonly registry = new Registry()

  readonly requests = new Counter({
    name: 'tollgate_requests_total',
    help: 'Proxied requests by team, model, endpoint and status.',
    labelNames: ['team', 'model', 'endpoint', 'status'] as const,
    registers: [this.registry],
  })

  readonly duration = new FastHistogram(
    'tollgate_request_duration_seconds',
    'Whole request duration, to the end of the answer (streams included).',
    ['endpoint', 'stream'],
    LATENCY_BUCKETS,
    this.registry,
  )

  readonly timeToFirstByte = new FastHistogram(
    'tollgate_time_to_first_byte_seconds',
    'From the request arriving to the first byte of the answer going out.',
    ['endpoint', 'stream'],
    LATENCY_BUCKETS,
    this.registry,
  )

  readonly upstreamLatency = new FastHistogram(
    'tollgate_upstream_latency_seconds',
    'From sending a request upstream to its response headers.',
    ['upstream', 'status'],
    LATENCY_BUCKETS,
    this.registry,
  )

  readonly gatewayOverhead = new FastHistogram(
    'tollgate_gateway_overhead_seconds',
    'Time spent in the gateway before the upstream call and after its headers (auth, admission, forwarding).',
    ['endpoint'],
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    this.registry,
  )

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

  readonly upstreamKeys = new Gauge({
    name: 'tollgate_upstream_keys',
    help: "An upstream's keys by state: available, at_budget (its requests per minute used up), cooling (after a 429), refused (after a 401/403).",
    labelNames: ['upstream', 'state'] as const,
    registers: [this.registry],
  })

  readonly alerts = new Counter({
    name: 'tollgate_alerts_total',
    help: 'Webhook alert deliveries by outcome: delivered, retried (an attempt failed; another follows), failed (every attempt failed).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  })

  readonly redisErrors = new Counter({
    name: 'tollgate_redis_errors_total',
    help: 'Redis connection errors.',
    registers: [this.registry],
  })

  readonly localAdmissions = new Counter({
    name: 'tollgate_local_admissions_total',
    help: "Admissions decided by this instance's own limits because Redis was away (fail-open): while it grows, limits hold per instance, not across instances.",
    registers: [this.registry],
  })

  /** The buffers of what waits for Redis (quota/resilient.ts, audit/resilient.ts), each its size and its drops. */
  readonly buffers = {
    usage: bufferMetrics(this.registry, 'usage', 'Usage records'),
    audit: bufferMetrics(this.registry, 'audit', 'Audit entries'),
  }

  readonly buildInfo = new Gauge({
    name: 'tollgate_build_info',
    help: "Always 1: the gateway's version and the Node.js it runs on, as labels.",
    labelNames: ['version', 'node'] as const,
    registers: [this.registry],
  })

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'tollgate_' })
    this.buildInfo.set({ version: VERSION, node: process.version }, 1)
  }
}
