import { afterEach, describe, expect, it } from 'vitest'
import { STREAM_TEXT } from '../helpers/fake-upstream.js'
import { rawRequest } from '../helpers/http.js'
import { useGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

const MINIMAX = 'minimaxai/minimax-m2.1'
const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user', content: 'Grüß dich! 你好' }]

const ctx = useGateway()

afterEach(() => {
  ctx.upstream.sliceDelayMs = 0
})

function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(ctx.gw.url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${ctx.key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

const lastRequest = () => ctx.upstream.requests.at(-1)!

describe('non-streaming', () => {
  it('returns the upstream status and JSON body byte for byte', async () => {
    const res = await post('/v1/chat/completions', { model: LLAMA, messages })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/json')
    expect(await res.text()).toBe(ctx.upstream.bodies.at(-1))
  })

  it('answers completions and embeddings through the same pipeline', async () => {
    const completion = await post('/v1/completions', { model: LLAMA, prompt: 'Once upon a time' })
    expect(completion.status).toBe(200)
    expect(((await completion.json()) as { choices: { text: string }[] }).choices[0]!.text).toBe(STREAM_TEXT)
    expect(lastRequest().path).toBe('/v1/completions')

    const embedding = await post('/v1/embeddings', { model: 'nvidia/nv-embedqa-e5-v5', input: ['a', 'bb'], input_type: 'query' })
    expect(embedding.status).toBe(200)
    expect(await embedding.text()).toBe(ctx.upstream.bodies.at(-1))
    expect(lastRequest().body).toEqual({ model: 'nvidia/nv-embedqa-e5-v5', input: ['a', 'bb'], input_type: 'query' })
  })
})

describe('credentials and headers', () => {
  it("sends the upstream's stored key and never the client's credentials, cookies or hop-by-hop headers", async () => {
    const res = await rawRequest(
      ctx.gw.url + '/v1/chat/completions',
      'POST',
      {
        authorization: `Bearer ${ctx.key}`,
        'content-type': 'application/json',
        cookie: 'session=abc',
        'x-api-key': 'client-secret',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        connection: 'keep-alive, x-custom-hop',
        'x-custom-hop': 'hop',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'x-request-id': 'trace-123',
      },
      JSON.stringify({ model: LLAMA, messages }),
    )
    expect(res.status).toBe(200)
    expect(res.headers['x-request-id']).toBe('trace-123')
    const headers = lastRequest().headers
    expect(headers.authorization).toBe(`Bearer ${ctx.upstream.apiKeys[0]}`)
    for (const name of ['cookie', 'x-api-key', 'proxy-authorization', 'x-custom-hop', 'keep-alive', 'te']) {
      expect(headers[name], name).toBeUndefined()
    }
    expect(JSON.stringify(headers)).not.toContain(ctx.key)
    expect(headers['x-request-id']).toBe('trace-123')
  })
})

describe('model defaults', () => {
  it("fills in minimax-m2.1's recommended parameters the client left out", async () => {
    const res = await post('/v1/chat/completions', { model: MINIMAX, messages })
    expect(res.status).toBe(200)
    expect(lastRequest().body).toEqual({ model: MINIMAX, messages, temperature: 1, top_p: 0.95, max_tokens: 8192 })
  })

  it("keeps the client's own values, including an explicit null", async () => {
    await post('/v1/chat/completions', { model: MINIMAX, messages, temperature: 0.2, max_tokens: 64, top_p: null })
    expect(lastRequest().body).toEqual({ model: MINIMAX, messages, temperature: 0.2, max_tokens: 64, top_p: null })
  })

  it('does not add max_tokens beside a client max_completion_tokens', async () => {
    await post('/v1/chat/completions', { model: MINIMAX, messages, max_completion_tokens: 100 })
    const body = lastRequest().body!
    expect(body.max_completion_tokens).toBe(100)
    expect(body).not.toHaveProperty('max_tokens')
  })

  it("forwards the client's own bytes, numbers as written, with the defaults in front", async () => {
    // 1.0 and a 20-digit seed would change if the body were parsed and written again.
    const text = `{ "model" : "${MINIMAX}", "messages": ${JSON.stringify(messages)}, "presence_penalty": 1.0, "seed": 12345678901234567890 }`
    const res = await rawRequest(
      ctx.gw.url + '/v1/chat/completions',
      'POST',
      { authorization: `Bearer ${ctx.key}`, 'content-type': 'application/json' },
      text,
    )
    expect(res.status).toBe(200)
    expect(lastRequest().raw).toBe(`{"temperature":1,"top_p":0.95,"max_tokens":8192,${text.slice(1)}`)
  })

  it('forwards a body that needs nothing added exactly as sent', async () => {
    const text = `{"messages":${JSON.stringify(messages)},"model":"${LLAMA}","temperature":0.50}`
    const res = await rawRequest(
      ctx.gw.url + '/v1/chat/completions',
      'POST',
      { authorization: `Bearer ${ctx.key}`, 'content-type': 'application/json' },
      text,
    )
    expect(res.status).toBe(200)
    expect(lastRequest().raw).toBe(text)
  })

  it('adds nothing to models without defaults, and nothing to embeddings', async () => {
    await post('/v1/chat/completions', { model: LLAMA, messages })
    expect(lastRequest().body).toEqual({ model: LLAMA, messages })
  })
})

async function readAll(res: Response): Promise<Buffer> {
  return Buffer.from(await res.arrayBuffer())
}

/** The upstream's bytes without its usage-only event: what a client that did not ask for usage gets. */
function withoutUsageEvent(sent: Buffer): Buffer {
  const text = sent.toString('utf8')
  const usageEvent = /data: \{[^\n]*"choices":\[\],"usage":\{[^\n]*\}\n\n/
  expect(text).toMatch(usageEvent)
  return Buffer.from(text.replace(usageEvent, ''), 'utf8')
}

describe('streaming', () => {
  it('passes the SSE through byte for byte when the client asked for usage itself', async () => {
    const res = await post('/v1/chat/completions', { model: MINIMAX, messages, stream: true, stream_options: { include_usage: true } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    const received = await readAll(res)
    const sent = ctx.upstream.streams.at(-1)!
    expect(received.equals(sent)).toBe(true)
    // The fixture really does split characters and carry comments, or this test proves little.
    expect(sent.toString('utf8')).toContain(': keep-alive\n\n')
    expect(received.toString('utf8')).toContain('data: [DONE]\n\n')
  })

  it('asks for usage itself when the client did not, and removes exactly that one event', async () => {
    const res = await post('/v1/chat/completions', { model: MINIMAX, messages, stream: true })
    expect(res.status).toBe(200)
    const received = await readAll(res)
    expect(lastRequest().body!.stream_options).toEqual({ include_usage: true })
    expect(received.equals(withoutUsageEvent(ctx.upstream.streams.at(-1)!))).toBe(true)
    expect(received.toString('utf8')).not.toMatch(/"usage":\{/)
  })

  it("keeps the client's other stream options when it adds include_usage", async () => {
    const res = await post('/v1/chat/completions', { model: LLAMA, messages, stream: true, stream_options: { include_usage: false } })
    expect(res.status).toBe(200)
    const received = await readAll(res)
    expect(lastRequest().body!.stream_options).toEqual({ include_usage: true })
    expect(received.equals(withoutUsageEvent(ctx.upstream.streams.at(-1)!))).toBe(true)
  })

  it('streams completions byte for byte too', async () => {
    const asked = await post('/v1/completions', { model: LLAMA, prompt: 'x', stream: true, stream_options: { include_usage: true } })
    expect((await readAll(asked)).equals(ctx.upstream.streams.at(-1)!)).toBe(true)
    const notAsked = await post('/v1/completions', { model: LLAMA, prompt: 'x', stream: true })
    expect((await readAll(notAsked)).equals(withoutUsageEvent(ctx.upstream.streams.at(-1)!))).toBe(true)
  })

  it('delivers bytes as they arrive, before the upstream has finished', async () => {
    ctx.upstream.enqueue({ kind: 'stall-after', events: 5 })
    const res = await post('/v1/chat/completions', { model: LLAMA, messages, stream: true })
    const reader = res.body!.getReader()
    const got: Buffer[] = []
    await waitFor(() => ctx.upstream.streams.length > 0 && ctx.upstream.requests.at(-1)?.body?.stream === true, 'upstream stream')
    const expected = ctx.upstream.streams.at(-1)!
    // The upstream never ends this stream: all of it must reach us anyway.
    while (Buffer.concat(got).length < expected.length) {
      const { value, done } = await reader.read()
      if (done) break
      got.push(Buffer.from(value))
    }
    expect(Buffer.concat(got).equals(expected)).toBe(true)
    await reader.cancel()
  })

  it('aborts the upstream request when the client goes away mid-stream', async () => {
    ctx.upstream.sliceDelayMs = 5
    const before = ctx.upstream.closedEarly
    const controller = new AbortController()
    const res = await fetch(ctx.gw.url + '/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${ctx.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: LLAMA, messages, stream: true }),
      signal: controller.signal,
    })
    const reader = res.body!.getReader()
    await reader.read()
    controller.abort()
    await waitFor(() => ctx.upstream.closedEarly > before, 'the upstream to see its connection closed')
    await waitFor(
      () => ctx.gw.logLines().some((l) => l.msg === 'request' && l.stream === true && l.aborted === true),
      'the log line of the aborted stream',
    )
  })
})
