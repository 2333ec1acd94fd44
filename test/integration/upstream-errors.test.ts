import { describe, expect, it } from 'vitest'
import { type TestGateway, useGateway, withGateway, type Envelope } from '../helpers/gateway.js'
import { freePort } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user', content: 'hi' }]

const ctx = useGateway({ env: { NVIDIA_RETRIES: '0' } })

function chat(target: TestGateway, clientKey: string, body: Record<string, unknown> = {}) {
  return fetch(target.url + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: LLAMA, messages, ...body }),
  })
}

describe("NVIDIA's error shapes become OpenAI's envelope, keeping the status", () => {
  it.each([
    [
      '{status,title,detail}',
      402,
      '{"status":402,"title":"Payment Required","detail":"Account \'acct-x\': Cloud credits expired - please renew"}',
      'application/problem+json',
      {
        message: "Payment Required: Account 'acct-x': Cloud credits expired - please renew",
        code: 'upstream_payment_required',
        type: 'invalid_request_error',
      },
    ],
    [
      '{status,title,detail} 404',
      404,
      '{"status":404,"title":"Not Found","detail":"Function \'f-1\': Not found for account \'a\'"}',
      'application/json',
      { message: "Not Found: Function 'f-1': Not found for account 'a'", code: 'model_not_found', type: 'invalid_request_error' },
    ],
    [
      '{error:"text"} 422',
      422,
      '{"error":"body -> top_k\\n  Extra inputs are not permitted (type=extra_forbidden)"}',
      'application/json',
      { message: 'body -> top_k\n  Extra inputs are not permitted (type=extra_forbidden)', code: null, type: 'invalid_request_error' },
    ],
    [
      '{status,title} 429',
      429,
      '{"status":429,"title":"Too Many Requests"}',
      'application/json',
      { message: 'Too Many Requests', code: 'upstream_rate_limited', type: 'requests' },
    ],
    [
      '{message,type,code} 500',
      500,
      '{"message":"Internal server error","type":"internal_server_error","code":500}',
      'application/json',
      { message: 'Internal server error', code: null, type: 'server_error' },
    ],
    [
      '{error:{…}} 503',
      503,
      '{"error":{"message":"ResourceExhausted: no capacity","type":"Service Unavailable","code":503}}',
      'application/json',
      { message: 'ResourceExhausted: no capacity', code: null, type: 'server_error' },
    ],
    [
      'plain text 410',
      410,
      'Model has been retired',
      'text/plain',
      { message: 'Model has been retired', code: 'model_retired', type: 'invalid_request_error' },
    ],
    [
      'empty body 500',
      500,
      '',
      'text/plain',
      { message: "Upstream 'nvidia' answered 500 without a message.", code: null, type: 'server_error' },
    ],
  ])('%s', async (_label, status, body, contentType, expected) => {
    ctx.upstream.enqueue({ kind: 'error', status, body, contentType })
    const res = await chat(ctx.gw, ctx.key)
    expect(res.status).toBe(status)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    const data = (await res.json()) as Envelope
    expect(Object.keys(data.error).sort()).toEqual(['code', 'message', 'param', 'type'])
    expect(data.error.message).toContain(expected.message)
    expect(data.error.type).toBe(expected.type)
    expect(data.error.code).toBe(expected.code)
    expect(data.error.param).toBeNull()
  })

  it('converts errors of streaming requests too, as JSON rather than SSE', async () => {
    ctx.upstream.enqueue({
      kind: 'error',
      status: 503,
      body: '{"error":{"message":"ResourceExhausted","type":"Service Unavailable","code":503}}',
    })
    const res = await chat(ctx.gw, ctx.key, { stream: true })
    expect(res.status).toBe(503)
    expect(((await res.json()) as Envelope).error.message).toContain('ResourceExhausted')
  })

  it("passes the upstream's retry-after on", async () => {
    ctx.upstream.enqueue({
      kind: 'error',
      status: 429,
      body: '{"status":429,"title":"Too Many Requests"}',
      headers: { 'retry-after': '7' },
    })
    const res = await chat(ctx.gw, ctx.key)
    expect(res.status).toBe(429)
    expect(res.headers.get('retry-after')).toBe('7')
  })

  it('never answers 202: a queued upstream request it cannot poll (no NVCF-REQID) is a 504', async () => {
    ctx.upstream.enqueue({
      kind: 'custom',
      answer: (res) => {
        res.removeHeader('nvcf-reqid')
        res.writeHead(202).end()
      },
    })
    const res = await chat(ctx.gw, ctx.key)
    expect(res.status).toBe(504)
    expect(((await res.json()) as Envelope).error.code).toBe('upstream_timeout')
  })
})

describe("the upstream refusing the gateway's own key", () => {
  it('is a 502 saying the client key was fine, logged at error level, with no key anywhere', async () => {
    const wrongKey = 'nvapi-wrong-key-for-this-test-000000'
    await withGateway({ env: { NVIDIA_BASE_URL: ctx.upstream.baseUrl, NVIDIA_API_KEY: wrongKey } }, async (other) => {
      const clientKey = (await other.createKey()).key
      const res = await chat(other, clientKey)
      expect(res.status).toBe(502)
      expect(res.headers.get('x-should-retry')).toBe('false')
      const text = await res.text()
      const data = JSON.parse(text) as Envelope
      expect(data.error.code).toBe('upstream_auth_failed')
      expect(data.error.message).toContain('Your API key was accepted')
      expect(data.error.message).toContain('403')
      expect(text).not.toContain(wrongKey)
      const errorLine = other.logLines().find((l) => l.level === 50 && String(l.msg).includes('refused'))
      expect(errorLine).toMatchObject({ upstream: 'nvidia', upstream_status: 403 })
      expect(other.logs.join('\n')).not.toContain(wrongKey)
    })
  })

  it('a 401 with a plain-text body (no key sent) is also a 502', async () => {
    const config = `upstreams:\n  local:\n    base_url: ${ctx.upstream.baseUrl}\nmodels:\n  ${LLAMA}:\n    upstream: local\n`
    await withGateway(
      { env: { TOLLGATE_CONFIG: '/cfg.yaml', NVIDIA_API_KEY: undefined }, files: { '/cfg.yaml': config } },
      async (other) => {
        const res = await chat(other, (await other.createKey()).key)
        expect(res.status).toBe(502)
        expect(((await res.json()) as Envelope).error.message).toContain("Header of type 'authorization' was missing")
      },
    )
  })
})

describe('transport failures', () => {
  it('an unreachable upstream is a 502', async () => {
    const port = await freePort()
    await withGateway({ env: { NVIDIA_BASE_URL: `http://127.0.0.1:${port}/v1`, NVIDIA_API_KEY: 'nvapi-x' } }, async (other) => {
      const res = await chat(other, (await other.createKey()).key)
      expect(res.status).toBe(502)
      expect(((await res.json()) as Envelope).error.code).toBe('upstream_unreachable')
    })
  })

  it('an upstream that never answers is a 504 after the configured time to headers', async () => {
    const config = `upstreams:\n  nvidia:\n    base_url: ${ctx.upstream.baseUrl}\n    timeouts:\n      headers_ms: 200\n`
    await withGateway({ upstream: ctx.upstream, env: { TOLLGATE_CONFIG: '/cfg.yaml' }, files: { '/cfg.yaml': config } }, async (other) => {
      ctx.upstream.enqueue({ kind: 'hang' })
      const res = await chat(other, (await other.createKey()).key)
      expect(res.status).toBe(504)
      expect(((await res.json()) as Envelope).error.code).toBe('upstream_timeout')
      // Server-Timing and the log line count the gateway's time up to the upstream call, not the
      // 200 ms spent waiting on it.
      const id = res.headers.get('x-request-id')
      const requestLine = () => other.logLines().find((l) => l.reqId === id && l.msg === 'request')
      await waitFor(() => requestLine() !== undefined, 'the log line')
      const line = requestLine()!
      expect(res.headers.get('server-timing')).toBe(`gateway;dur=${line.gateway_ms}`)
      expect(line.duration_ms as number).toBeGreaterThanOrEqual((line.gateway_ms as number) + 200)
    })
  })

  it('without any NVIDIA key the gateway answers 503 and says what to set', async () => {
    await withGateway({ env: { NVIDIA_BASE_URL: ctx.upstream.baseUrl } }, async (other) => {
      const res = await chat(other, (await other.createKey()).key)
      expect(res.status).toBe(503)
      expect(res.headers.get('x-should-retry')).toBe('false')
      expect(((await res.json()) as Envelope).error.message).toContain('NVIDIA_API_KEY')
    })
  })
})
