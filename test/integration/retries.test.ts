import type { ServerResponse } from 'node:http'
import OpenAI, { APIError, InternalServerError, RateLimitError } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { withGateway, type Envelope, type TestGateway } from '../helpers/gateway.js'

/**
 * The gateway's retries and the SDKs' together: once the gateway has spent its own retries, it
 * tells the client not to multiply them (`x-should-retry: false`), passes on when to try again,
 * and says whose limit an upstream 429 is. All attempts share one deadline.
 */

const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user' as const, content: 'hi' }]

let upstream: FakeUpstream
beforeAll(async () => {
  upstream = await new FakeUpstream().start()
})
afterAll(async () => {
  await upstream.close()
})

const config = (extra: string) => ({
  env: { TOLLGATE_CONFIG: '/c.yaml' },
  files: { '/c.yaml': `upstreams:\n  nvidia:\n    base_url: ${upstream.baseUrl}\n    retry_base_ms: 10\n${extra}` },
})
const sdk = async (gw: TestGateway, team: string) => new OpenAI({ apiKey: (await gw.createKey(team)).key, baseURL: `${gw.url}/v1` })
const unavailable = {
  kind: 'error' as const,
  status: 503,
  body: '{"error":{"message":"ResourceExhausted: busy","type":"Service Unavailable","code":503}}',
}

describe('an upstream error the gateway has retried', () => {
  it("costs one client call (with the SDK's own two retries) exactly the gateway's three upstream attempts", async () => {
    await withGateway({ upstream, ...config('    retries: 2\n') }, async (gw) => {
      const client = await sdk(gw, 'retried')
      upstream.enqueue(unavailable, unavailable, unavailable)
      const before = upstream.requests.length
      const failure = await client.chat.completions.create({ model: LLAMA, messages }).catch((err: unknown) => err)
      expect(failure).toBeInstanceOf(InternalServerError)
      expect((failure as APIError).status).toBe(503)
      expect((failure as APIError).headers?.get('x-should-retry')).toBe('false')
      expect(upstream.requests.length - before).toBe(3)
    })
  })

  it("a 429 says it is the upstream's limit, not the team's, and passes on when to try again", async () => {
    await withGateway({ upstream, ...config('    retries: 0\n') }, async (gw) => {
      const client = await sdk(gw, 'upstream-limited')
      upstream.enqueue({ kind: 'error', status: 429, body: '{"status":429,"title":"Too Many Requests"}', headers: { 'retry-after': '7' } })
      const before = upstream.requests.length
      const failure = await client.chat.completions.create({ model: LLAMA, messages }).catch((err: unknown) => err)
      expect(failure).toBeInstanceOf(RateLimitError)
      const error = failure as APIError
      expect(error.code).toBe('upstream_rate_limited')
      expect(error.message).toContain("not your team's quota")
      expect(error.headers?.get('retry-after')).toBe('7')
      expect(error.headers?.get('x-should-retry')).toBe('false')
      expect(upstream.requests.length - before).toBe(1)
    })
  })
})

describe('retries after a slow answer', () => {
  it('share one deadline: a slow upstream holds the client for its time to headers once, then a 504', async () => {
    await withGateway({ upstream, ...config('    retries: 2\n    timeouts: { headers_ms: 400 }\n') }, async (gw) => {
      const key = (await gw.createKey('deadline')).key
      const slow503 = {
        kind: 'custom' as const,
        answer: (res: ServerResponse) =>
          void setTimeout(() => res.writeHead(503, { 'content-type': 'application/json' }).end(unavailable.body), 250),
      }
      upstream.enqueue(slow503, slow503, slow503)
      const before = upstream.requests.length
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: LLAMA, messages }),
      })
      expect(res.status).toBe(504)
      expect(res.headers.get('x-should-retry')).toBe('false')
      expect(((await res.json()) as Envelope).error.code).toBe('upstream_timeout')
      // The first attempt took 250 ms of the 400; the second had what was left, and no third came.
      expect(upstream.requests.length - before).toBe(2)
    })
  })
})
