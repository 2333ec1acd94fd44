import type { ServerResponse } from 'node:http'
import { connect, type Socket } from 'node:net'
import OpenAI, { APIError } from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { ADMIN_TOKEN, startGateway, withGateway, type Envelope, type TestGateway } from '../helpers/gateway.js'
import { rawRequest } from '../helpers/http.js'
import { keyStates, sample } from '../helpers/metrics.js'
import { startServer } from '../helpers/process.js'
import { freePort } from '../helpers/redis.js'
import { readStream } from '../helpers/sdk.js'
import { waitFor } from '../helpers/wait.js'

/**
 * A shared gateway's first promise: no tenant, and no upstream, can stall it, crash it or exhaust
 * it. Each test sends what a hostile client (with a valid key) or a misbehaving upstream would.
 */

const MINIMAX = 'minimaxai/minimax-m2.1'
const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user' as const, content: 'hi' }]

let upstream: FakeUpstream
beforeAll(async () => {
  upstream = await new FakeUpstream().start()
})
afterAll(async () => {
  await upstream.close()
})

async function teamKey(gw: TestGateway, id: string, team: Record<string, unknown> = {}): Promise<string> {
  expect((await gw.admin('POST', '/admin/teams', { id, ...team })).status).toBe(201)
  return ((await (await gw.admin('POST', `/admin/teams/${id}/keys`, {})).json()) as { key: string }).key
}

const post = (gw: TestGateway, key: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

async function usageOf(gw: TestGateway, team: string): Promise<Record<string, number> | undefined> {
  const res = await gw.admin('GET', `/admin/usage?team=${team}`)
  return ((await res.json()) as { data: Record<string, number>[] }).data[0]
}

/** Deterministic words of 2 to 9 random letters and digits: what BPE finds slowest to count. */
function randomWords(bytes: number, seed = 7): string {
  let x = seed
  const parts: string[] = []
  let size = 0
  while (size < bytes) {
    let word = ''
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31
    for (let n = 2 + (x % 8); n > 0; n--) {
      x = (x * 1_103_515_245 + 12_345) % 2 ** 31
      word += 'abcdefghijklmnopqrstuvwxyz0123456789'[x % 36]
    }
    parts.push(word)
    size += word.length + 1
  }
  return parts.join(' ')
}

const sse = (events: string[]) => events.map((e) => `data: ${e}\n\n`).join('')
const chunk = (delta: Record<string, unknown>, usage: string | null = null) =>
  `{"id":"c","object":"chat.completion.chunk","created":1,"model":"${LLAMA}","choices":[{"index":0,"delta":${JSON.stringify(delta)},"finish_reason":null}],"usage":${usage}}`

describe('a prompt that is costly to count', () => {
  it('leaves the gateway answering everyone else while it is counted, and is answered itself', async () => {
    // The gateway as its own process, so this test's requests are not held up with it.
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const server = startServer({
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_TOKEN,
      NVIDIA_BASE_URL: upstream.baseUrl,
      NVIDIA_API_KEY: upstream.apiKeys[0]!,
    })
    try {
      await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => null))?.status === 200, 'the gateway to start', 20_000)
      const admin = (path: string, body: unknown) =>
        fetch(url + path, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })
      // A token limit: the prompt is counted for a reservation before the call.
      expect((await admin('/admin/teams', { id: 'costly', limits: { tokens_per_minute: 100_000_000 } })).status).toBe(201)
      const { key } = (await (await admin('/admin/teams/costly/keys', {})).json()) as { key: string }
      const before = upstream.requests.length
      const release = upstream.hold()
      const body = {
        model: LLAMA,
        messages: [
          { role: 'user', content: 'x'.repeat(200_000) },
          { role: 'user', content: randomWords(4_000_000) },
        ],
      }
      const big = fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
      // /healthz, one after another, until the big request has been counted and sent upstream.
      // Counting it all on the event loop once held every request for 15 to 22 s: none answered.
      let answered = 0
      while (upstream.requests.length === before) {
        expect((await fetch(`${url}/healthz`)).status).toBe(200)
        answered++
      }
      release()
      const res = await big
      expect(res.status).toBe(200)
      expect(answered).toBeGreaterThanOrEqual(10)
    } finally {
      server.child.kill('SIGKILL')
    }
  }, 60_000)
})

describe('nonsense usage from the upstream', () => {
  it('is not believed: the process lives, the request is answered, usage is estimated and the log says so', async () => {
    await withGateway({ upstream, env: { NVIDIA_RETRIES: '0' } }, async (gw) => {
      const key = await teamKey(gw, 'nonsense')
      const values = ['-500000', '1e999', '"abc"', '2.5']
      for (const value of values) {
        const usage = `{"prompt_tokens":${value},"completion_tokens":5,"total_tokens":${value}}`
        const json = `{"id":"x","object":"chat.completion","created":1,"model":"${LLAMA}","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":${usage}}`
        upstream.enqueue({ kind: 'custom', answer: (res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(json) })
        const whole = await post(gw, key, { model: LLAMA, messages })
        expect(whole.status).toBe(200)
        expect(await whole.text()).toBe(json)

        const stream = sse([
          chunk({ role: 'assistant', content: 'hello there' }),
          `{"id":"c","object":"chat.completion.chunk","created":1,"model":"${LLAMA}","choices":[],"usage":${usage}}`,
          '[DONE]',
        ])
        upstream.enqueue({ kind: 'custom', answer: (res) => void res.writeHead(200, { 'content-type': 'text/event-stream' }).end(stream) })
        const streamed = await post(gw, key, { model: LLAMA, messages, stream: true, stream_options: { include_usage: true } })
        expect(streamed.status).toBe(200)
        expect(await streamed.text()).toBe(stream)
      }
      // Still serving.
      expect((await post(gw, key, { model: LLAMA, messages })).status).toBe(200)
      await waitFor(async () => (await usageOf(gw, 'nonsense'))?.requests === 2 * values.length + 1, 'every request to settle')
      const row = (await usageOf(gw, 'nonsense'))!
      expect(row.estimated_requests).toBe(2 * values.length)
      expect(row.prompt_tokens).toBeGreaterThan(0)
      await waitFor(
        () => gw.logLines().filter((l) => l.level === 40 && String(l.msg).includes('usage that is not')).length === 2 * values.length,
        'a warning for each',
      )
      const text = await (await fetch(`${gw.url}/metrics`)).text()
      expect(sample(text, 'tollgate_tokens_total', { team: 'nonsense', kind: 'prompt' })).toBeGreaterThan(0)
    })
  })
})

describe('an upstream stream without end', () => {
  /** Writes events until the connection goes away; counts what it wrote. */
  const endless = (every: number, written: { bytes: number }) => ({
    kind: 'custom' as const,
    answer: (res: ServerResponse) =>
      new Promise<void>((done) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        const event = `data: ${chunk({ content: 'and on ' })}\n\n`
        const timer = setInterval(() => {
          for (let i = 0; i < every; i++) {
            res.write(event)
            written.bytes += event.length
          }
        }, 1)
        res.on('close', () => {
          clearInterval(timer)
          done()
        })
      }),
  })

  it('is ended at the byte limit with an error event the SDK raises, the upstream let go, usage settled', async () => {
    await withGateway({ upstream, env: { STREAM_MAX_BYTES: String(256 * 1024) } }, async (gw) => {
      const key = await teamKey(gw, 'endless')
      const written = { bytes: 0 }
      const closedBefore = upstream.closedEarly
      upstream.enqueue(endless(50, written))
      const client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 })
      const stream = await client.chat.completions.create({ model: LLAMA, messages, stream: true })
      const { text, failure } = await readStream(stream)
      expect(failure).toBeInstanceOf(APIError)
      expect((failure as APIError).message).toContain('limit of 262144 bytes')
      expect(text.startsWith('and on and on')).toBe(true)
      await waitFor(() => upstream.closedEarly === closedBefore + 1, 'the upstream stream to be let go')
      await waitFor(async () => (await usageOf(gw, 'endless'))?.requests === 1, 'the stream to settle')
      const row = (await usageOf(gw, 'endless'))!
      expect(row.estimated_requests).toBe(1)
      expect(row.completion_tokens).toBeGreaterThan(0)
      expect(gw.logLines().some((l) => l.level === 40 && l.code === 'stream_too_large')).toBe(true)
    })
  })

  it('is ended at the time limit the same way', async () => {
    await withGateway({ upstream, env: { STREAM_MAX_SECONDS: '1' } }, async (gw) => {
      const key = await teamKey(gw, 'forever')
      upstream.enqueue(endless(1, { bytes: 0 }))
      const res = await post(gw, key, { model: LLAMA, messages, stream: true })
      expect(res.status).toBe(200)
      const text = await res.text()
      const last = text.trimEnd().split('\n\n').at(-1)!
      expect(JSON.parse(last.slice('data: '.length))).toEqual({
        error: {
          message: "The upstream's stream ran past the gateway's limit of 1s and was ended.",
          type: 'server_error',
          param: null,
          code: 'stream_too_long',
        },
      })
      await waitFor(async () => (await usageOf(gw, 'forever'))?.estimated_requests === 1, 'the stream to settle')
    })
  })

  it('an event that never ends is cut at the event limit', async () => {
    await withGateway({ upstream, env: { STREAM_MAX_EVENT_BYTES: String(64 * 1024) } }, async (gw) => {
      const key = await teamKey(gw, 'long-event')
      const first = `data: ${chunk({ role: 'assistant', content: 'ok' })}\n\n`
      upstream.enqueue({
        kind: 'custom',
        answer: (res) => {
          res.writeHead(200, { 'content-type': 'text/event-stream' })
          res.write(first)
          // One event of a megabyte without its blank line, written in pieces.
          for (let i = 0; i < 64; i++) res.write(`data: ${'y'.repeat(16 * 1024)}\n`)
          res.end()
        },
      })
      const res = await post(gw, key, { model: LLAMA, messages, stream: true })
      const text = await res.text()
      expect(text.startsWith(first)).toBe(true)
      const events = text.split('\n\n').filter(Boolean)
      expect(events).toHaveLength(2)
      expect(JSON.parse(events[1]!.slice('data: '.length)).error.code).toBe('stream_event_too_large')
    })
  })

  it("a whole answer past the read limit is a 502 in OpenAI's envelope, not read to its end", async () => {
    await withGateway({ upstream, env: { ANSWER_MAX_BYTES: String(1024 * 1024), NVIDIA_RETRIES: '0' } }, async (gw) => {
      const key = await teamKey(gw, 'huge-answer')
      const written = { bytes: 0 }
      upstream.enqueue({
        kind: 'custom',
        answer: (res) =>
          new Promise<void>((done) => {
            res.writeHead(200, { 'content-type': 'application/json' })
            res.write('{"choices":[{"message":{"content":"')
            const timer = setInterval(() => {
              res.write('z'.repeat(64 * 1024))
              written.bytes += 64 * 1024
            }, 1)
            res.on('close', () => {
              clearInterval(timer)
              done()
            })
          }),
      })
      const res = await post(gw, key, { model: LLAMA, messages })
      expect(res.status).toBe(502)
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
      expect(((await res.json()) as Envelope).error.code).toBe('upstream_answer_too_large')
      expect(written.bytes).toBeLessThan(64 * 1024 * 1024)
    })
  })
})

describe('connections that send nothing, or too little', () => {
  let gw: TestGateway
  let key: string
  beforeAll(async () => {
    gw = await startGateway({ upstream, env: { HEADERS_TIMEOUT_MS: '1000', REQUEST_TIMEOUT_MS: '2000' } })
    key = await teamKey(gw, 'sockets')
  })
  afterAll(async () => gw.close())

  const open = (): Promise<Socket> =>
    new Promise((resolve, reject) => {
      const socket = connect(Number(new URL(gw.url).port), '127.0.0.1', () => resolve(socket))
      socket.on('error', reject)
    })
  const answerOf = (socket: Socket): Promise<string> =>
    new Promise((resolve) => {
      let got = ''
      socket.on('data', (d: Buffer) => (got += d.toString('utf8')))
      socket.on('close', () => resolve(got))
    })

  it('200 idle sockets are closed within the header timeout, while requests go on being served', async () => {
    const sockets = await Promise.all(Array.from({ length: 200 }, open))
    const closed = sockets.map((s) => new Promise((resolve) => s.on('close', resolve)))
    expect((await post(gw, key, { model: LLAMA, messages })).status).toBe(200)
    await Promise.all(closed)
    expect(sockets.every((s) => s.destroyed)).toBe(true)
  })

  it("a body trickled a byte at a time gets a 408 in OpenAI's envelope, and its connection closed", async () => {
    const socket = await open()
    const answer = answerOf(socket)
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`,
    )
    const trickle = setInterval(() => socket.writable && socket.write(' '), 200)
    const text = await answer
    clearInterval(trickle)
    expect(text.startsWith('HTTP/1.1 408 ')).toBe(true)
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toEqual({
      error: {
        message: 'The request did not arrive in time; the connection is closed.',
        type: 'invalid_request_error',
        param: null,
        code: 'request_timeout',
      },
    })
  })

  it("headers larger than the parser takes get a 431 in OpenAI's envelope, not Fastify's", async () => {
    const res = await rawRequest(
      `${gw.url}/v1/chat/completions`,
      'POST',
      { authorization: `Bearer ${key}`, 'x-filler': 'f'.repeat(20 * 1024) },
      '{}',
    )
    expect(res.status).toBe(431)
    expect(JSON.parse(res.body.toString()).error).toMatchObject({ type: 'invalid_request_error', code: 'headers_too_large' })
  })
})

describe('an upstream that fails after its headers, before its first event', () => {
  let gw: TestGateway
  let key: string
  beforeAll(async () => {
    const yaml = 'upstreams:\n  nvidia:\n    base_url: ' + upstream.baseUrl + '\n    timeouts: { idle_ms: 300 }\n    retries: 0\n'
    gw = await startGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': yaml } })
    key = await teamKey(gw, 'early-fail')
  })
  afterAll(async () => gw.close())

  const headersThen = (then: 'die' | 'stall', type = 'text/event-stream') => ({
    kind: 'custom' as const,
    answer: (res: ServerResponse) => {
      res.writeHead(200, { 'content-type': type })
      res.flushHeaders()
      if (then === 'die') setTimeout(() => res.socket?.destroy(), 20)
    },
  })

  it.each([
    ['a stream that dies', true, 'die', 502, 'upstream_unreachable'],
    ['a stream that stalls', true, 'stall', 504, 'upstream_timeout'],
    ['an event stream answering a request for JSON, that dies', false, 'die', 502, 'upstream_unreachable'],
  ] as const)("%s: the client gets its 502 or 504 in OpenAI's envelope", async (_label, stream, then, status, code) => {
    upstream.enqueue(headersThen(then))
    const res = await post(gw, key, { model: LLAMA, messages, stream })
    expect(res.status).toBe(status)
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
    expect(((await res.json()) as Envelope).error).toMatchObject({ type: 'server_error', code })
  })

  it('a client that leaves before the first event is no error in the log', async () => {
    upstream.enqueue(headersThen('stall'))
    const controller = new AbortController()
    const res = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: LLAMA, messages, stream: true }),
      signal: controller.signal,
    }).catch((err: unknown) => err)
    const before = gw.logs.length
    const sent = upstream.requests.length
    await waitFor(() => upstream.requests.length > sent, 'the request upstream')
    controller.abort()
    await res
    const since = () => gw.logLines().slice(before)
    await waitFor(() => since().some((l) => l.msg === 'request'), 'its request line')
    expect(since().find((l) => l.msg === 'request')).toMatchObject({ aborted: true })
    expect(since().filter((l) => (l.level as number) >= 50)).toEqual([])
  })
})

describe('what the upstream writes about its keys', () => {
  it('is never passed on: a retry-after holding the key is dropped, a readable one rewritten, and every encoding of the key in an error body scrubbed', async () => {
    const secret = upstream.apiKeys[0]!
    await withGateway({ upstream, env: { NVIDIA_RETRIES: '0' } }, async (gw) => {
      const key = await teamKey(gw, 'leaks')
      const echoes = [
        secret,
        encodeURIComponent(secret).replace(/-/g, '%2D'),
        Buffer.from(`Bearer ${secret}`).toString('base64'),
        Buffer.from(secret).toString('hex'),
      ]
      const body = JSON.stringify({ status: 429, title: 'Too Many Requests', detail: `key ${echoes.join(' / ')} is over its limit` })
      upstream.enqueue({
        kind: 'error',
        status: 429,
        body,
        headers: { 'retry-after': secret },
        contentType: `application/json; key=${secret}`,
      })
      const leaked = await post(gw, key, { model: LLAMA, messages })
      expect(leaked.status).toBe(429)
      const text = await leaked.text()
      const headers = JSON.stringify([...leaked.headers])
      for (const echo of [...echoes, secret.slice(6)]) {
        expect(text).not.toContain(echo)
        expect(headers).not.toContain(echo)
      }
      expect(leaked.headers.get('retry-after')).toBeNull()
      expect(leaked.headers.get('content-type')).toBe('application/json; charset=utf-8')
      expect(text).toContain('[redacted]')

      upstream.enqueue({
        kind: 'error',
        status: 429,
        body: '{"status":429,"title":"Too Many Requests"}',
        headers: { 'retry-after': new Date(Date.now() + 30_000).toUTCString() },
      })
      const dated = await post(gw, key, { model: LLAMA, messages })
      expect(Number(dated.headers.get('retry-after'))).toBeGreaterThanOrEqual(29)
      expect(Number(dated.headers.get('retry-after'))).toBeLessThanOrEqual(31)
    })
  })
})

describe('model names', () => {
  it('another spelling of a limited model meets the same limit; names that cannot be a model are a 400 naming model', async () => {
    await withGateway({ upstream }, async (gw) => {
      const key = await teamKey(gw, 'spelling', { model_limits: { [MINIMAX]: { requests_per_minute: 2 } } })
      for (let i = 0; i < 2; i++) expect((await post(gw, key, { model: MINIMAX, messages })).status).toBe(200)
      expect((await post(gw, key, { model: MINIMAX, messages })).status).toBe(429)
      expect((await post(gw, key, { model: 'MinimaxAI/MiniMax-M2.1', messages })).status).toBe(429)
      for (const model of [
        'minimaxai/minimax-m2.1 ',
        ' minimaxai/minimax-m2.1',
        'minimaxai//minimax-m2.1',
        'minimaxai/minimax-m2.1/',
        'minimaxai/mini\u0000max',
        'minimaxai/mini\u200bmax-m2.1',
      ]) {
        const res = await post(gw, key, { model, messages })
        expect({ model, status: res.status }).toEqual({ model, status: 400 })
        expect(((await res.json()) as Envelope).error).toMatchObject({
          type: 'invalid_request_error',
          param: 'model',
          code: 'invalid_model',
        })
      }
      // Another spelling gets the model's defaults and goes upstream by its configured name.
      const other = await teamKey(gw, 'spelling-2')
      expect((await post(gw, other, { model: 'MiniMaxAI/MiniMax-M2.1', messages })).status).toBe(200)
      expect(upstream.requests.at(-1)!.body).toMatchObject({ model: MINIMAX, max_tokens: 8192, temperature: 1 })
    })
  })

  it('1,000 made-up model names that an upstream answers make a bounded set of metrics labels', async () => {
    await withGateway({ upstream }, async (gw) => {
      const key = await teamKey(gw, 'labels')
      const answer = (res: ServerResponse) =>
        void res
          .writeHead(200, { 'content-type': 'application/json' })
          .end('{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')
      for (let batch = 0; batch < 20; batch++) {
        for (let i = 0; i < 50; i++) upstream.enqueue({ kind: 'custom', answer })
        const statuses = await Promise.all(
          Array.from({ length: 50 }, async (_, i) => (await post(gw, key, { model: `made-up/model-${batch}-${i}`, messages })).status),
        )
        expect(statuses.every((s) => s === 200)).toBe(true)
      }
      const text = await (await fetch(`${gw.url}/metrics`)).text()
      const labels = new Set([...text.matchAll(/^tollgate_requests_total\{[^}]*model="([^"]*)"/gm)].map((m) => m[1]))
      expect(labels.size).toBeGreaterThan(1)
      expect(labels.size).toBeLessThanOrEqual(101)
      expect(labels.has('other')).toBe(true)
    })
  })
})

describe('deeply nested JSON', () => {
  it('is a 400 naming the problem, for a limited team and for a stream that asks for usage', async () => {
    await withGateway({ upstream }, async (gw) => {
      const key = await teamKey(gw, 'nested', { limits: { tokens_per_minute: 1_000_000 } })
      const deep = `${'['.repeat(2_000_000)}${']'.repeat(2_000_000)}`
      for (const extra of ['', ',"stream":true,"stream_options":{"include_usage":true}']) {
        const res = await post(gw, key, `{"model":"${LLAMA}","messages":[{"role":"user","content":"hi"}],"tools":${deep}${extra}}`)
        expect(res.status).toBe(400)
        expect(((await res.json()) as Envelope).error).toEqual({
          message: 'The JSON body of your request is nested more than 128 levels deep.',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_json',
        })
      }
    })
  })
})

describe('failed authentications', () => {
  const yaml = { '/c.yaml': 'quotas:\n  auth_failures_per_minute: 3\n' }

  it('wrong admin tokens are limited per address too, apart from client keys', async () => {
    await withGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: yaml }, async (gw) => {
      const key = await teamKey(gw, 'typos')
      const wrong = { authorization: 'Bearer not-the-admin-token-at-all' }
      const statuses = []
      for (let i = 0; i < 5; i++) statuses.push((await fetch(`${gw.url}/admin/teams`, { headers: wrong })).status)
      expect(statuses).toEqual([401, 401, 401, 429, 429])
      expect((await gw.admin('GET', '/admin/teams')).status).toBe(429)
      // Client keys from the same address are not locked out by the operator's typos.
      expect((await post(gw, key, { model: LLAMA, messages })).status).toBe(200)
    })
  })

  it('behind TRUST_PROXY=true, an X-Forwarded-For the client wrote itself does not escape the limit', async () => {
    await withGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml', TRUST_PROXY: 'true' }, files: yaml }, async (gw) => {
      const statuses = []
      for (let i = 0; i < 5; i++) {
        // What a proxy in front sends: the client's own header, then the address it saw.
        const res = await post(
          gw,
          `tg-${'B'.repeat(43)}`,
          { model: LLAMA, messages },
          { 'x-forwarded-for': `198.51.100.${i}, 203.0.113.7` },
        )
        statuses.push(res.status)
      }
      expect(statuses).toEqual([401, 401, 401, 429, 429])
    })
  })
})

describe('an upstream 403', () => {
  it('for one model does not take keys out of rotation for every model', async () => {
    const three = await new FakeUpstream(['nvapi-test-key-a-000000001', 'nvapi-test-key-b-000000002', 'nvapi-test-key-c-000000003']).start()
    try {
      await withGateway({ upstream: three }, async (gw) => {
        const key = await teamKey(gw, 'entitled')
        const refuse = {
          kind: 'error' as const,
          status: 403,
          body: '{"status":403,"title":"Forbidden","detail":"Not entitled to this function"}',
        }
        for (let i = 0; i < 3; i++) {
          three.enqueue(refuse, refuse, refuse)
          expect((await post(gw, key, { model: LLAMA, messages })).status).toBe(502)
        }
        expect(await keyStates(gw.url)).toEqual({ available: 3, at_budget: 0, cooling: 0, refused: 0 })
        for (let i = 0; i < 3; i++) expect((await post(gw, key, { model: MINIMAX, messages })).status).toBe(200)
      })
    } finally {
      await three.close()
    }
  })
})
