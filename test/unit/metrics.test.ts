import { Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { FastHistogram, Metrics } from '../../src/metrics.js'

/** The request path's histograms against prom-client's own, fed the same observations. */

const BOUNDS = [0.001, 0.01, 0.1, 1]

function pair(labelNames: string[]) {
  const ours = new Registry()
  const theirs = new Registry()
  const fast = new FastHistogram('t_seconds', 'A test histogram.', labelNames, BOUNDS, ours)
  const reference = new Histogram({ name: 't_seconds', help: 'A test histogram.', labelNames, buckets: BOUNDS, registers: [theirs] })
  return { ours, theirs, fast, reference }
}

describe('FastHistogram', () => {
  it('reads exactly as a prom-client Histogram fed the same values, series by series', async () => {
    const { ours, theirs, fast, reference } = pair(['endpoint', 'stream'])
    // Values on bounds, between them, above the last one and below the first; series made in an
    // order that is not sorted; a label value that must be escaped.
    const observations: [string, string, number][] = [
      ['chat', 'false', 0.001],
      ['chat', 'false', 0.0005],
      ['embeddings', 'false', 0.5],
      ['chat', 'true', 3],
      ['chat', 'false', 0.01],
      ['chat', 'false', 0.0100001],
      ['say "hi"\\\n', 'true', 1],
      ['chat', 'true', 0.2],
      ['embeddings', 'false', 0],
      ['chat', 'false', 0.3333333333333333],
    ]
    for (const [endpoint, stream, value] of observations) {
      fast.series(endpoint, stream).observe(value)
      reference.observe({ endpoint, stream }, value)
    }
    const text = await ours.metrics()
    expect(text).toBe(await theirs.metrics())
    expect(text).toContain('t_seconds_bucket{le="0.01",endpoint="chat",stream="false"} 3')
    expect(text).toContain('t_seconds_count{endpoint="chat",stream="true"} 2')
    expect(await ours.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON())
  })

  it('takes one label and numeric label values', async () => {
    const { ours, theirs, fast, reference } = pair(['status'])
    for (const [status, value] of [
      [200, 0.002],
      [502, 2],
      [200, 0.02],
    ] as const) {
      fast.series(status).observe(value)
      reference.observe({ status }, value)
    }
    expect(await ours.metrics()).toBe(await theirs.metrics())
  })

  it('finds the same series for the same label values, leaves out values that are not numbers, and resets', async () => {
    const { ours, fast } = pair(['endpoint', 'stream'])
    const series = fast.series('chat', 'false')
    expect(fast.series('chat', 'false')).toBe(series)
    expect(fast.series('chat', 'true')).not.toBe(series)
    series.observe(Number.NaN)
    series.observe(Number.POSITIVE_INFINITY)
    series.observe(0.05)
    expect(series.count).toBe(1)
    expect(series.sum).toBe(0.05)
    ours.resetMetrics()
    expect(await ours.metrics()).toBe('# HELP t_seconds A test histogram.\n# TYPE t_seconds histogram\n')
    expect(fast.series('chat', 'false')).not.toBe(series)
  })

  it('refuses a registry name twice and label lists it cannot serve', () => {
    const registry = new Registry()
    new FastHistogram('twice', 'h', ['a'], BOUNDS, registry)
    expect(() => new FastHistogram('twice', 'h', ['a'], BOUNDS, registry)).toThrow(/already been registered/)
    expect(() => new FastHistogram('none', 'h', [], BOUNDS, registry)).toThrow(/one or two labels/)
  })
})

describe("the gateway's metric names", () => {
  it('follow Prometheus naming: _total only on counters, _seconds histograms, all under tollgate_', async () => {
    const metrics = await new Metrics().registry.getMetricsAsJSON()
    expect(metrics.length).toBeGreaterThan(10)
    for (const { name, type } of metrics) {
      expect(name).toMatch(/^tollgate_[a-z_]+$/)
      // promtool check metrics: "non-counter metrics should not have _total suffix", and counters should.
      expect({ name, counter: name.endsWith('_total') }).toEqual({ name, counter: String(type) === 'counter' })
      if (String(type) === 'histogram') expect(name).toMatch(/_seconds$/)
    }
  })
})
