import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream, STREAM_TEXT } from '../helpers/fake-upstream.js'
import { startGateway, withGateway, type Envelope, type TestGateway } from '../helpers/gateway.js'

/**
 * NVIDIA queues requests it cannot answer in time: 202 with an NVCF-REQID, then its status
 * endpoint. The gateway polls it with the key that sent the request, and the client gets the
 * answer; never a 202 (LangChain's ChatNVIDIA would poll NVIDIA itself, without the gateway's key).
 */

const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user', content: 'hi' }]

let upstream: FakeUpstream
let gw: TestGateway
let key: string
beforeAll(async () => {
  upstream = await new FakeUpstream().start()
  gw = await startGateway({ upstream })
  key = (await gw.createKey('queued')).key
})
afterAll(async () => {
  await gw.close()
  await upstream.close()
})

const post = (g: TestGateway, body: Record<string, unknown>) =>
  fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })

describe('a request NVIDIA queues', () => {
  it('is polled at its status endpoint with the same key until its answer comes, and the client gets that answer', async () => {
    upstream.enqueue({ kind: 'queued', polls: 3 })
    const before = upstream.requests.length
    const res = await post(gw, { model: LLAMA, messages })
    expect(res.status).toBe(200)
    const answer = (await res.json()) as { choices: { message: { content: string } }[] }
    expect(answer.choices[0]!.message.content).toBe(STREAM_TEXT)
    const calls = upstream.requests.slice(before)
    expect(calls.map((r) => `${r.method} ${r.path.replace(/queued-\d+/, 'ID')}`)).toEqual([
      'POST /v1/chat/completions',
      'GET /v2/nvcf/pexec/status/ID',
      'GET /v2/nvcf/pexec/status/ID',
      'GET /v2/nvcf/pexec/status/ID',
    ])
    for (const r of calls) expect(r.headers.authorization).toBe(`Bearer ${upstream.apiKeys[0]}`)
    for (const r of calls.slice(1)) expect(Number(r.headers['nvcf-poll-seconds'])).toBeGreaterThanOrEqual(1)
  })

  it('a queued stream comes back as the stream, byte for byte', async () => {
    upstream.enqueue({ kind: 'queued', polls: 2 })
    const res = await post(gw, { model: LLAMA, messages, stream: true, stream_options: { include_usage: true } })
    expect(res.status).toBe(200)
    const received = Buffer.from(await res.arrayBuffer())
    expect(received.equals(upstream.streams.at(-1)!)).toBe(true)
  })

  it("polling stops at the request's deadline: a 504, never a 202", async () => {
    await withGateway(
      {
        upstream,
        env: { TOLLGATE_CONFIG: '/c.yaml' },
        files: {
          '/c.yaml': `upstreams:\n  nvidia:\n    base_url: ${upstream.baseUrl}\n    status_url: ${upstream.statusUrl}\n    timeouts: { headers_ms: 900 }\n`,
        },
      },
      async (other) => {
        const otherKey = (await other.createKey('queued-forever')).key
        upstream.enqueue({ kind: 'queued', polls: 1_000 })
        const before = upstream.requests.length
        const res = await fetch(`${other.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${otherKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: LLAMA, messages }),
        })
        expect(res.status).toBe(504)
        expect(((await res.json()) as Envelope).error.code).toBe('upstream_timeout')
        // At least 250 ms between polls: a status endpoint answering 202 at once is not hammered.
        expect(upstream.requests.length - before).toBeLessThanOrEqual(5)
      },
    )
  })
})
