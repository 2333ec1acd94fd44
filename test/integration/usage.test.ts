import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { countText } from '../../src/usage/estimate.js'
import { FakeUpstream, STREAM_TEXT } from '../helpers/fake-upstream.js'
import { startGateway, type Envelope, type TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/** Usage when things go wrong: aborted streams are estimated, failed calls cost nothing. */

const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user', content: 'hi' }]

let upstream: FakeUpstream
let gw: TestGateway

beforeAll(async () => {
  upstream = await new FakeUpstream().start()
  gw = await startGateway({ upstream, env: { NVIDIA_RETRIES: '0' } })
})
afterAll(async () => {
  await gw.close()
  await upstream.close()
})

async function teamWithKey(id: string, limits: Record<string, number> = {}) {
  expect((await gw.admin('POST', '/admin/teams', { id, limits })).status).toBe(201)
  return ((await (await gw.admin('POST', `/admin/teams/${id}/keys`, {})).json()) as { key: string }).key
}

const call = (key: string, body: Record<string, unknown>, signal?: AbortSignal) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  })

async function usageOf(team: string) {
  const res = await gw.admin('GET', `/admin/usage?team=${team}`)
  return ((await res.json()) as { data: Record<string, number>[] }).data[0]
}

describe('usage when no usage arrives', () => {
  it('a stream the client abandons is estimated from the text that was streamed, and flagged', async () => {
    const key = await teamWithKey('aborts')
    upstream.sliceDelayMs = 3
    try {
      const controller = new AbortController()
      const res = await call(key, { model: LLAMA, messages, stream: true }, controller.signal)
      const reader = res.body!.getReader()
      // Read a few events' worth, then go away mid-stream.
      let got = 0
      while (got < 1_000) {
        const { value, done } = await reader.read()
        if (done) throw new Error('the stream ended before the client could abandon it')
        got += value.length
      }
      controller.abort()
    } finally {
      upstream.sliceDelayMs = 0
    }
    await waitFor(async () => (await usageOf('aborts'))?.requests === 1, 'the aborted stream to settle')
    const row = (await usageOf('aborts'))!
    expect(row.estimated_requests).toBe(1)
    expect(row.completion_tokens).toBeGreaterThan(0)
    expect(row.completion_tokens).toBeLessThan(await countText(STREAM_TEXT))
    expect(row.prompt_tokens).toBeGreaterThan(0)
    expect(row.total_tokens).toBe(row.prompt_tokens! + row.completion_tokens!)
  })

  it('an upstream that breaks off mid-stream is estimated too', async () => {
    const config = `upstreams:\n  nvidia:\n    base_url: ${upstream.baseUrl}\n    timeouts:\n      idle_ms: 300\n`
    const other = await startGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': config } })
    try {
      await other.admin('POST', '/admin/teams', { id: 'stalls' })
      const key = ((await (await other.admin('POST', '/admin/teams/stalls/keys', {})).json()) as { key: string }).key
      upstream.enqueue({ kind: 'stall-after', events: 8 })
      const res = await fetch(`${other.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: LLAMA, messages, stream: true }),
      })
      await res.text().catch(() => '')
      await waitFor(async () => {
        const rows = ((await (await other.admin('GET', '/admin/usage?team=stalls')).json()) as { data: Record<string, number>[] }).data
        return rows[0]?.estimated_requests === 1
      }, 'the broken stream to settle as estimated')
    } finally {
      await other.close()
    }
  })
})

describe('answers read whole', () => {
  it('an event stream answering a request that did not ask for one reaches the client byte for byte, its reported usage counted', async () => {
    const key = await teamWithKey('unasked-stream')
    const chunk = (rest: string) => `data: {"id":"chatcmpl-x","object":"chat.completion.chunk","model":"${LLAMA}",${rest}}\n\n`
    const sse =
      chunk('"choices":[{"index":0,"delta":{"content":"Grüße"}}]') +
      chunk('"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}') +
      'data: [DONE]\n\n'
    upstream.enqueue({ kind: 'error', status: 200, body: sse, contentType: 'text/event-stream; charset=utf-8' })
    const res = await call(key, { model: LLAMA, messages })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(sse))).toBe(true)
    await waitFor(async () => (await usageOf('unasked-stream'))?.requests === 1, 'the call to settle')
    expect(await usageOf('unasked-stream')).toMatchObject({
      prompt_tokens: 7,
      completion_tokens: 3,
      total_tokens: 10,
      estimated_requests: 0,
    })
  })

  it('a client that gives up before the answer closes the upstream request, is charged its prompt as an estimate, and frees its slot', async () => {
    const key = await teamWithKey('gives-up', { concurrent_requests: 1 })
    const closed = upstream.closedEarly
    const sent = upstream.requests.length
    upstream.enqueue({ kind: 'hang' })
    const controller = new AbortController()
    const pending = call(key, { model: LLAMA, messages }, controller.signal).catch((err: Error) => err)
    await waitFor(() => upstream.requests.length === sent + 1, 'the request to reach the upstream')
    controller.abort()
    expect(await pending).toBeInstanceOf(Error)
    await waitFor(() => upstream.closedEarly === closed + 1, 'the upstream to see the request closed')
    await waitFor(async () => (await usageOf('gives-up'))?.requests === 1, 'the call to settle')
    // The prompt reached the model, which may have read it: it counts, flagged as an estimate.
    const row = (await usageOf('gives-up'))!
    expect(row).toMatchObject({ completion_tokens: 0, estimated_requests: 1 })
    expect(row.prompt_tokens).toBeGreaterThan(0)
    expect((await call(key, { model: LLAMA, messages })).status).toBe(200)
  })
})

describe('failed calls', () => {
  it('cost no tokens and give their reservation back', async () => {
    const key = await teamWithKey('failing', { tokens_per_day: 100_000 })
    upstream.enqueue({
      kind: 'error',
      status: 503,
      body: '{"error":{"message":"ResourceExhausted","type":"Service Unavailable","code":503}}',
    })
    expect((await call(key, { model: LLAMA, messages, max_tokens: 50_000 })).status).toBe(503)
    await waitFor(async () => (await usageOf('failing'))?.requests === 1, 'the failed call to settle')
    expect(await usageOf('failing')).toMatchObject({ requests: 1, total_tokens: 0, estimated_requests: 0 })
    const team = (await (await gw.admin('GET', '/admin/teams/failing')).json()) as {
      quota: { team: { tokens_per_day: Record<string, number> } }
    }
    expect(team.quota.team.tokens_per_day).toEqual({ limit: 100_000, used: 0, remaining: 100_000, in_flight: 0 })
  })

  it('a refused request is counted nowhere but in the audit trail', async () => {
    const key = await teamWithKey('refused', { requests_per_minute: 1 })
    expect((await call(key, { model: LLAMA, messages })).status).toBe(200)
    const refused = await call(key, { model: LLAMA, messages })
    expect(refused.status).toBe(429)
    expect(refused.headers.get('x-ratelimit-limit-requests')).toBeNull()
    await waitFor(async () => (await usageOf('refused'))?.requests === 1, 'the first call to settle')
    expect((await usageOf('refused'))!.requests).toBe(1)
  })
})

describe('usage reports', () => {
  it('GET /v1/usage shows the caller its own team', async () => {
    const key = await teamWithKey('mine', { tokens_per_month: 1_000_000 })
    const first = await call(key, { model: LLAMA, messages })
    const total = ((await first.json()) as { usage: { total_tokens: number } }).usage.total_tokens
    await waitFor(async () => (await usageOf('mine'))?.requests === 1, 'settlement')
    const res = await fetch(`${gw.url}/v1/usage`, { headers: { authorization: `Bearer ${key}` } })
    const body = (await res.json()) as Record<string, unknown>
    expect(body).toMatchObject({
      object: 'usage',
      team: 'mine',
      today: { requests: 1, total_tokens: total, estimated_requests: 0 },
      this_month: { requests: 1, total_tokens: total },
      limits: { team: { tokens_per_month: { limit: 1_000_000, used: total, remaining: 1_000_000 - total } }, models: {} },
    })
  })

  it.each([
    ['from=2026-13-01', 'from'],
    ['to=yesterday', 'to'],
    ['group_by=colour', 'group_by'],
    ['format=xml', 'format'],
    ['colour=red', 'colour'],
    ['from=2026-02-01&to=2026-01-01', 'from'],
    ['from=2020-01-01&to=2026-01-01', 'from'],
  ])('/admin/usage?%s is a 400 naming %s', async (query, param) => {
    const res = await gw.admin('GET', `/admin/usage?${query}`)
    expect(res.status).toBe(400)
    expect(((await res.json()) as Envelope).error.param).toBe(param)
  })

  it('/admin/usage for an unknown team is a 404', async () => {
    expect((await gw.admin('GET', '/admin/usage?team=ghost')).status).toBe(404)
  })
})
