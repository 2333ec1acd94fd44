import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { parser } from '@prometheus-io/lezer-promql'
import { parse as parseYaml } from 'yaml'
import { beforeAll, describe, expect, it } from 'vitest'
import type { FakeUpstream } from '../helpers/fake-upstream.js'
import { type TestGateway, useGateway } from '../helpers/gateway.js'
import { startServer } from '../helpers/process.js'
import { sample } from '../helpers/metrics.js'
import { freePort } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user', content: 'hi' }]

const ctx = useGateway({}, 'observed')
let gw: TestGateway
let key: string
let upstream: FakeUpstream

beforeAll(async () => {
  ;({ gw, key, upstream } = ctx)
  await gw.admin('PATCH', '/admin/teams/observed', { limits: { requests_per_minute: 3 } })
})

const chat = (body: Record<string, unknown> = {}) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: LLAMA, messages, ...body }),
  })

describe('observability', () => {
  it('Server-Timing splits gateway and upstream time; the log line carries the same figures', async () => {
    const plain = await chat()
    const timing = plain.headers.get('server-timing')!
    expect(timing).toMatch(/^gateway;dur=\d+(\.\d+)?, upstream;dur=\d+(\.\d+)?$/)
    await plain.text()
    const stream = await chat({ stream: true })
    expect(stream.headers.get('server-timing')).toMatch(/^gateway;dur=\d+(\.\d+)?$/)
    await stream.text()
    await waitFor(() => gw.logLines().filter((l) => l.team === 'observed' && l.msg === 'request').length >= 2, 'log lines')
    const line = gw.logLines().find((l) => l.team === 'observed' && l.stream === false)!
    expect(typeof line.gateway_ms).toBe('number')
    expect(typeof line.upstream_ms).toBe('number')
    expect(timing).toContain(`gateway;dur=${line.gateway_ms}`)
  })

  it('/metrics counts requests, tokens, rejections and streams, by team and model, and holds no key', async () => {
    expect(await (await chat()).text()).toContain('chatcmpl')
    const refused = await chat()
    expect(refused.status).toBe(429)
    await refused.text()
    await waitFor(
      async () => sample(await (await fetch(`${gw.url}/metrics`)).text(), 'tollgate_requests_total', { team: 'observed' }) === 3,
      'the counters',
    )
    const res = await fetch(`${gw.url}/metrics`)
    expect(res.headers.get('content-type')).toContain('text/plain')
    const text = await res.text()
    expect(sample(text, 'tollgate_requests_total', { team: 'observed', model: LLAMA, endpoint: 'chat', status: '200' })).toBe(3)
    expect(sample(text, 'tollgate_requests_total', { team: 'observed', endpoint: 'chat', status: '429' })).toBe(1)
    expect(sample(text, 'tollgate_rejections_total', { kind: 'requests' })).toBe(1)
    expect(sample(text, 'tollgate_tokens_total', { team: 'observed', model: LLAMA, kind: 'completion' })).toBeGreaterThan(0)
    expect(sample(text, 'tollgate_streams_open')).toBe(0)
    expect(sample(text, 'tollgate_time_to_first_byte_seconds_count', { endpoint: 'chat', stream: 'true' })).toBe(1)
    expect(sample(text, 'tollgate_time_to_first_byte_seconds_count', { endpoint: 'chat', stream: 'false' })).toBe(2)
    expect(sample(text, 'tollgate_upstream_latency_seconds_count', { upstream: 'nvidia', status: '200' })).toBe(3)
    expect(sample(text, 'tollgate_gateway_overhead_seconds_count', { endpoint: 'chat' })).toBe(3)
    // Histograms in Prometheus's form: cumulative buckets ending in +Inf = count, and a sum.
    const buckets = text
      .split('\n')
      .filter((l) => l.startsWith('tollgate_request_duration_seconds_bucket{') && l.includes('stream="false"'))
    expect(buckets[0]).toMatch(/^tollgate_request_duration_seconds_bucket\{le="0\.0005",endpoint="chat",stream="false"\} \d+$/)
    const counts = buckets.map((l) => Number(l.split(' ').at(-1)))
    expect(counts).toEqual([...counts].sort((a, b) => a - b))
    expect(sample(text, 'tollgate_request_duration_seconds_bucket', { le: '+Inf', endpoint: 'chat', stream: 'false' })).toBe(2)
    expect(sample(text, 'tollgate_request_duration_seconds_count', { endpoint: 'chat', stream: 'false' })).toBe(2)
    expect(sample(text, 'tollgate_request_duration_seconds_sum', { endpoint: 'chat', stream: 'false' })).toBeGreaterThan(0)
    expect(text).toContain('# TYPE tollgate_request_duration_seconds histogram')
    expect(text).toContain('# TYPE tollgate_requests_total counter')
    expect(text).toContain('# TYPE tollgate_usage_buffer_dropped_total counter')
    expect(sample(text, 'tollgate_upstream_keys', { upstream: 'nvidia', state: 'available' })).toBe(1)
    expect(text).toContain('tollgate_process_cpu_seconds_total')
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    expect(sample(text, 'tollgate_build_info', { version, node: process.version })).toBe(1)
    expect(text).not.toContain(key)
    expect(text).not.toContain(upstream.apiKeys[0]!)
  })

  it("answers the gateway makes itself carry Server-Timing too: refusals, bad input, unknown routes; an upstream's error keeps both parts", async () => {
    const own = (await gw.createKey('timed')).key
    await gw.admin('PATCH', '/admin/teams/timed', { limits: { requests_per_minute: 1 } })
    const send = (path: string, bearer: string, body: string) =>
      fetch(`${gw.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
        body,
      })
    const ok = JSON.stringify({ model: LLAMA, messages })
    // (A model nothing configures has a label of its own once it has answered; before, 'other'.)
    expect((await send('/v1/chat/completions', (await gw.createKey('timed-before')).key, ok)).status).toBe(200)
    upstream.enqueue({ kind: 'error', status: 400, body: '{"error":{"message":"bad temperature","type":"invalid_request_error"}}' })
    const answers = {
      upstreamError: await send('/v1/chat/completions', own, ok),
      refused: await send('/v1/chat/completions', own, ok),
      badKey: await send('/v1/chat/completions', 'sk-tg-made-up-wrong', ok),
      badJson: await send('/v1/chat/completions', own, '{"model":'),
      unknownRoute: await send('/v1/nothing-here', own, ok),
    }
    const statuses = Object.fromEntries(Object.entries(answers).map(([name, res]) => [name, res.status]))
    expect(statuses).toEqual({ upstreamError: 400, refused: 429, badKey: 401, badJson: 400, unknownRoute: 404 })
    expect(answers.upstreamError.headers.get('server-timing')).toMatch(/^gateway;dur=\d+(\.\d+)?, upstream;dur=\d+(\.\d+)?$/)
    for (const name of ['refused', 'badKey', 'badJson', 'unknownRoute'] as const) {
      expect({ name, timing: answers[name].headers.get('server-timing') }).toEqual({
        name,
        timing: expect.stringMatching(/^gateway;dur=\d+(\.\d+)?$/),
      })
    }
    // The log line of the refusal has the same figure.
    const id = answers.refused.headers.get('x-request-id')
    const requestLine = () => gw.logLines().find((l) => l.reqId === id && l.msg === 'request')
    await waitFor(() => requestLine() !== undefined, "the refusal's log line")
    const line = requestLine()!
    expect(answers.refused.headers.get('server-timing')).toBe(`gateway;dur=${line.gateway_ms}`)
    expect(line.upstream_ms).toBeNull()
    await Promise.all(Object.values(answers).map((res) => res.text()))

    // Every request to a proxied endpoint is counted by its status, admitted or not: the team is
    // '' when no key was valid, the model '' when no body was.
    const counted = (labels: Record<string, string>) => async () =>
      sample(await (await fetch(`${gw.url}/metrics`)).text(), 'tollgate_requests_total', labels)
    await waitFor(async () => (await counted({ team: '', status: '401' })()) === 1, 'the 401 to be counted')
    // (The model, routed upstream unlisted, answered before: its errors carry its name.)
    expect(await counted({ team: 'timed', model: LLAMA, endpoint: 'chat', status: '400' })()).toBe(1)
    expect(await counted({ team: 'timed', model: LLAMA, endpoint: 'chat', status: '429' })()).toBe(1)
    expect(await counted({ team: 'timed', model: '', endpoint: 'chat', status: '400' })()).toBe(1)
    expect(await counted({ team: '', model: '', endpoint: 'chat', status: '401' })()).toBe(1)
    expect(await counted({ status: '404' })()).toBeUndefined()
  })

  it('METRICS_PORT moves /metrics off the main port', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()]
    const { child } = startServer({
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      HOST: '127.0.0.1',
      NVIDIA_BASE_URL: upstream.baseUrl,
    })
    try {
      await waitFor(
        async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`).catch(() => null))?.status === 200,
        'the metrics port',
        20_000,
      )
      expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).toBe(404)
      expect(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).toContain('tollgate_requests_total')
    } finally {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })
})

describe('the example alert rules (deploy/prometheus/alerts.yml)', () => {
  interface Rule {
    alert: string
    expr: string
    for?: string
    labels: { severity: string }
    annotations: { summary: string; description: string }
  }
  const file = readFileSync(new URL('../../deploy/prometheus/alerts.yml', import.meta.url), 'utf8')
  const rules = (parseYaml(file) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules)

  /** The metrics an expression selects, with the label names it matches or groups by. */
  function selectors(expr: string) {
    const tree = parser.parse(expr)
    const metrics: { name: string; labels: string[] }[] = []
    const grouping: string[] = []
    let errors = 0
    tree.iterate({
      enter: (node) => {
        if (node.type.isError) errors++
        if (node.name === 'VectorSelector') {
          const name = node.node.getChild('Identifier')
          const matchers = node.node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []
          metrics.push({
            name: name ? expr.slice(name.from, name.to) : '',
            labels: matchers.map((m) => m.getChild('LabelName')!).map((l) => expr.slice(l.from, l.to)),
          })
        }
        if (node.name === 'GroupingLabels') for (const l of node.node.getChildren('LabelName')) grouping.push(expr.slice(l.from, l.to))
      },
    })
    return { errors, metrics, grouping }
  }

  it('parse as PromQL and select only metrics, and labels, that the gateway exports', async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    const types = new Map([...text.matchAll(/^# TYPE (\w+) (\w+)$/gm)].map((m) => [m[1]!, m[2]!]))
    /** Label names seen on a series' samples (a histogram's _bucket adds le). */
    const labelsOf = (series: string) =>
      new Set(
        [...text.matchAll(new RegExp(`^${series}\\{([^}]*)\\}`, 'gm'))].flatMap((m) => [...m[1]!.matchAll(/(\w+)="/g)].map((l) => l[1]!)),
      )
    expect(rules.length).toBeGreaterThanOrEqual(8)
    for (const rule of rules) {
      const { errors, metrics, grouping } = selectors(rule.expr)
      expect(errors, `${rule.alert}: ${rule.expr}`).toBe(0)
      expect(metrics.length, rule.alert).toBeGreaterThan(0)
      for (const m of metrics) {
        const base = m.name.replace(/_bucket$/, '')
        expect(types.has(m.name) || (m.name !== base && types.get(base) === 'histogram'), `${rule.alert}: ${m.name} is not exported`).toBe(
          true,
        )
        const seen = labelsOf(m.name)
        for (const label of m.labels) expect(seen, `${rule.alert}: ${m.name} has no label ${label}`).toContain(label)
      }
      for (const label of grouping) {
        expect(
          metrics.some((m) => labelsOf(m.name).has(label)),
          `${rule.alert}: no selected metric has ${label}`,
        ).toBe(true)
      }
      // A label an annotation names must survive the expression's aggregation.
      for (const [, label] of JSON.stringify(rule.annotations).matchAll(/\$labels\.(\w+)/g)) expect(grouping, rule.alert).toContain(label)
      expect(['warning', 'critical']).toContain(rule.labels.severity)
      expect(rule.annotations.summary.length).toBeGreaterThan(10)
    }
  })

  it('the check sees a misspelt metric, a label it lacks and broken PromQL', () => {
    expect(selectors('rate(tollgate_requests_total{status=~"5.."}[5m]) >').errors).toBeGreaterThan(0)
    expect(selectors('max by (upstream) (tollgate_upstream_key{state="available"})')).toEqual({
      errors: 0,
      metrics: [{ name: 'tollgate_upstream_key', labels: ['state'] }],
      grouping: ['upstream'],
    })
  })
})
