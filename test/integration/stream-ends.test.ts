import OpenAI, { APIError } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { sample } from '../helpers/metrics.js'
import { readStream } from '../helpers/sdk.js'
import { waitFor } from '../helpers/wait.js'

/**
 * How a stream ends, as a client and an operator see it: an upstream that stalls or breaks after
 * the first event is the upstream's failure (an error event the SDKs raise, a 5xx in the metrics),
 * not the client leaving; a client that closes right after [DONE] (as the Python SDK does) got the
 * whole answer.
 */

const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user' as const, content: 'hi' }]

let upstream: FakeUpstream
let gw: TestGateway
beforeAll(async () => {
  upstream = await new FakeUpstream().start()
  const yaml = `upstreams:\n  nvidia:\n    base_url: ${upstream.baseUrl}\n    retries: 0\n    timeouts: { idle_ms: 300 }\n`
  gw = await startGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': yaml } })
})
afterAll(async () => {
  await gw.close()
  await upstream.close()
})

async function teamKey(id: string): Promise<string> {
  expect((await gw.admin('POST', '/admin/teams', { id })).status).toBe(201)
  return ((await (await gw.admin('POST', `/admin/teams/${id}/keys`, {})).json()) as { key: string }).key
}

async function usageOf(team: string): Promise<Record<string, number> | undefined> {
  return ((await (await gw.admin('GET', `/admin/usage?team=${team}`)).json()) as { data: Record<string, number>[] }).data[0]
}

const requestLine = (team: string) => gw.logLines().find((l) => l.msg === 'request' && l.team === team)
const counted = async (labels: Record<string, string>) =>
  sample(await (await fetch(`${gw.url}/metrics`)).text(), 'tollgate_requests_total', labels)

describe('an upstream that stalls mid-stream', () => {
  it('ends the stream with an error event the SDK raises as an APIError, counted as a 504, usage estimated', async () => {
    const key = await teamKey('stalls')
    upstream.enqueue({ kind: 'stall-after', events: 6 })
    const client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 })
    const stream = await client.chat.completions.create({ model: LLAMA, messages, stream: true })
    const { text, failure } = await readStream(stream)
    expect(failure).toBeInstanceOf(APIError)
    expect((failure as APIError).message).toBe("Upstream 'nvidia' did not answer in time. The stream was ended.")
    expect(text.length).toBeGreaterThan(0)

    await waitFor(() => requestLine('stalls') !== undefined, 'the request line')
    expect(requestLine('stalls')).toMatchObject({ status: 504, aborted: false, stream_error: 'upstream_timeout', level: 30 })
    expect(gw.logLines().some((l) => l.level === 40 && l.code === 'upstream_timeout')).toBe(true)
    expect(await counted({ team: 'stalls', status: '504' })).toBe(1)
    expect(await counted({ team: 'stalls', status: '499' })).toBeUndefined()
    await waitFor(async () => (await usageOf('stalls'))?.requests === 1, 'the stream to settle')
    expect(await usageOf('stalls')).toMatchObject({ requests: 1, estimated_requests: 1 })
    expect((await usageOf('stalls'))!.completion_tokens).toBeGreaterThan(0)
  })
})

describe('a client that closes right after [DONE]', () => {
  it('got the whole answer: counted as a 200, not aborted, and the upstream is read to its end, not cancelled', async () => {
    const key = await teamKey('done-then-gone')
    const body = [
      `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"${LLAMA}","choices":[{"index":0,"delta":{"content":"all of it"},"finish_reason":"stop"}],"usage":null}\n\n`,
      `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"${LLAMA}","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}\n\n`,
      'data: [DONE]\n\n',
    ].join('')
    const closedBefore = upstream.closedEarly
    upstream.enqueue({
      kind: 'custom',
      // [DONE], then the end of the response a little later (as a proxy in front may hold it).
      answer: (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(body)
        setTimeout(() => res.end(), 150)
      },
    })
    const controller = new AbortController()
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: LLAMA, messages, stream: true, stream_options: { include_usage: true } }),
      signal: controller.signal,
    })
    const reader = res.body!.getReader()
    let got = ''
    while (!got.includes('data: [DONE]\n\n')) got += Buffer.from((await reader.read()).value!).toString()
    controller.abort()
    expect(got).toBe(body)

    await waitFor(() => requestLine('done-then-gone') !== undefined, 'the request line')
    expect(requestLine('done-then-gone')).toMatchObject({ status: 200, aborted: false })
    expect(await counted({ team: 'done-then-gone', status: '200' })).toBe(1)
    await waitFor(async () => (await usageOf('done-then-gone'))?.requests === 1, 'the stream to settle')
    expect(await usageOf('done-then-gone')).toMatchObject({ requests: 1, estimated_requests: 0, total_tokens: 7 })
    await new Promise((r) => setTimeout(r, 300))
    expect(upstream.closedEarly).toBe(closedBefore)
  })
})
