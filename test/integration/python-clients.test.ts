import type { ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream, STREAM_TEXT } from '../helpers/fake-upstream.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { pythonClients, pythonScenario } from '../helpers/python.js'
import { waitFor } from '../helpers/wait.js'

/**
 * The Python `openai` SDK (pinned in test/python/requirements.txt, installed into .venv-test on
 * first use) against the gateway and a fake NVIDIA: the catalog's own snippet, and what the SDK
 * raises, after how many attempts, for each way a call can fail.
 */

const LLAMA = 'meta/llama-3.1-8b-instruct'
let upstream: FakeUpstream
let gw: TestGateway
let python: string
let base: string

beforeAll(async () => {
  python = await pythonClients()
  upstream = await new FakeUpstream().start()
  const yaml = `upstreams:\n  nvidia:\n    base_url: ${upstream.baseUrl}\n    retry_base_ms: 10\n    timeouts: { idle_ms: 500 }\n`
  gw = await startGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': yaml } })
  base = `${gw.url}/v1`
}, 180_000)
afterAll(async () => {
  await gw?.close()
  await upstream?.close()
})

const keyOf = async (team: string, limits: Record<string, number> = {}) => {
  expect((await gw.admin('POST', '/admin/teams', { id: team, limits })).status).toBe(201)
  return ((await (await gw.admin('POST', `/admin/teams/${team}/keys`, {})).json()) as { key: string }).key
}

describe('the Python SDK, as the catalog shows it', () => {
  it('the seed snippet streams the whole text, its parameters sent as written', async () => {
    const result = await pythonScenario(python, 'seed-stream', base, await keyOf('py-seed'))
    expect(result).toEqual({ ok: { text: STREAM_TEXT, reasoning: '' }, attempts: 1 })
    expect(upstream.requests.at(-1)!.body).toMatchObject({
      model: 'minimaxai/minimax-m2.1',
      temperature: 1,
      top_p: 0.95,
      max_tokens: 8192,
      stream: true,
    })
    // The SDK closes the connection right after [DONE]: a stream it read to the end is complete.
    await waitFor(() => gw.logLines().some((l) => l.msg === 'request' && l.team === 'py-seed'), 'the request line')
    expect(gw.logLines().find((l) => l.msg === 'request' && l.team === 'py-seed')).toMatchObject({ status: 200, aborted: false })
  })

  it('a non-streaming call, with its usage', async () => {
    const result = await pythonScenario(python, 'non-stream', base, await keyOf('py-plain'))
    expect(result).toMatchObject({
      ok: { text: STREAM_TEXT, usage: { prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number) } },
      attempts: 1,
    })
  })

  it('include_usage: the usage chunk arrives, and the text is whole', async () => {
    const result = (await pythonScenario(python, 'include-usage', base, await keyOf('py-usage'))) as {
      ok: { text: string; usage: { total_tokens: number } }
    }
    expect(result.ok.text).toBe(STREAM_TEXT)
    expect(result.ok.usage.total_tokens).toBeGreaterThan(0)
  })

  it('reasoning_content in the deltas reaches the SDK', async () => {
    const delta = (d: Record<string, string>) =>
      `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":${JSON.stringify(d)},"finish_reason":null}]}\n\n`
    upstream.enqueue({
      kind: 'custom',
      answer: (res: ServerResponse) =>
        void res
          .writeHead(200, { 'content-type': 'text/event-stream' })
          .end(
            delta({ reasoning_content: 'First, ' }) +
              delta({ reasoning_content: 'think.' }) +
              delta({ content: 'Done.' }) +
              'data: [DONE]\n\n',
          ),
    })
    expect(await pythonScenario(python, 'reasoning-content', base, await keyOf('py-think'))).toEqual({
      ok: { reasoning: 'First, think.' },
      attempts: 1,
    })
  })
})

describe('what the Python SDK raises, and after how many attempts', () => {
  const unavailable = {
    kind: 'error' as const,
    status: 503,
    body: '{"error":{"message":"ResourceExhausted: busy","type":"Service Unavailable","code":503}}',
  }

  it('an upstream 503 the gateway retried: InternalServerError, one attempt (three upstream calls in all)', async () => {
    upstream.enqueue(unavailable, unavailable, unavailable)
    const before = upstream.requests.length
    expect(await pythonScenario(python, 'call', base, await keyOf('py-503'))).toMatchObject({
      raised: 'InternalServerError',
      status: 503,
      attempts: 1,
    })
    expect(upstream.requests.length - before).toBe(3)
  })

  it('an upstream 429: RateLimitError with its own code, one attempt', async () => {
    const limited = { kind: 'error' as const, status: 429, body: '{"status":429,"title":"Too Many Requests"}' }
    upstream.enqueue(limited, limited, limited)
    expect(await pythonScenario(python, 'call', base, await keyOf('py-429'))).toMatchObject({
      raised: 'RateLimitError',
      status: 429,
      code: 'upstream_rate_limited',
      attempts: 1,
    })
  })

  it("the team's own concurrency limit: RateLimitError after the SDK's own retries, which the limit invites", async () => {
    const key = await keyOf('py-busy', { concurrent_requests: 1 })
    const release = upstream.hold()
    const held = fetch(`${base}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: LLAMA, messages: [{ role: 'user', content: 'hold' }] }),
    })
    try {
      expect(await pythonScenario(python, 'call', base, key)).toMatchObject({
        raised: 'RateLimitError',
        status: 429,
        code: 'concurrency_limit_exceeded',
        attempts: 3,
      })
    } finally {
      release()
      await (await held).text()
    }
  })

  it("the seed snippet's max_tokens 8192 on a team whose whole day is 5,000 tokens: BadRequestError saying what fits, one attempt", async () => {
    const result = await pythonScenario(python, 'seed-stream', base, await keyOf('py-small', { tokens_per_day: 5000 }))
    expect(result).toMatchObject({ raised: 'BadRequestError', status: 400, code: 'quota_too_small', attempts: 1 })
    expect(result.message).toMatch(/The largest max_tokens that could fit is \d+\./)
  })

  it('a wrong key: AuthenticationError, one attempt', async () => {
    expect(await pythonScenario(python, 'call', base, `tg-${'W'.repeat(43)}`)).toMatchObject({
      raised: 'AuthenticationError',
      status: 401,
      code: 'invalid_api_key',
      attempts: 1,
    })
  })

  it('an upstream that stalls mid-stream: an APIError, not an httpx protocol error', async () => {
    upstream.enqueue({ kind: 'stall-after', events: 5 })
    expect(await pythonScenario(python, 'stream', base, await keyOf('py-stall'))).toMatchObject({
      raised: 'APIError',
      message: "Upstream 'nvidia' did not answer in time. The stream was ended.",
      attempts: 1,
    })
  })
})
