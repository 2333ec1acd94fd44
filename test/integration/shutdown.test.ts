import { once } from 'node:events'
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { startServer } from '../helpers/process.js'
import { freePort } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

/** SIGTERM while streams are open: every stream completes, then the process exits 0. */

const ADMIN = 'shutdown-test-admin-token-0000000'
let upstream: FakeUpstream

beforeAll(async () => {
  upstream = await new FakeUpstream().start()
})
afterAll(async () => {
  await upstream.close()
})

async function keyFor(url: string): Promise<string> {
  await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => null))?.status === 200, 'the gateway to start', 20_000)
  const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
  await fetch(`${url}/admin/teams`, { method: 'POST', headers: admin, body: '{"id":"ml"}' })
  return ((await (await fetch(`${url}/admin/teams/ml/keys`, { method: 'POST', headers: admin, body: '{}' })).json()) as { key: string }).key
}

describe('graceful shutdown', () => {
  it('lets 20 open streams finish, refuses new work, and exits 0', async () => {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const { child, output } = startServer({
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_TOKEN: ADMIN,
      NVIDIA_BASE_URL: upstream.baseUrl,
      NVIDIA_API_KEY: upstream.apiKeys[0]!,
    })
    try {
      const key = await keyFor(url)

      upstream.sliceDelayMs = 3 // each stream takes a couple of seconds
      const streams = await Promise.all(
        Array.from({ length: 20 }, () =>
          fetch(`${url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }], stream: true }),
          }),
        ),
      )
      expect(streams.map((r) => r.status)).toEqual(Array(20).fill(200))
      const bodies = streams.map((r) => r.text())
      await waitFor(() => upstream.streams.length >= 20, 'all 20 streams to be under way')

      child.kill('SIGTERM')
      await waitFor(() => output().includes('shutting down'), 'the shutdown to begin')
      // New work is refused while the streams drain.
      const late = await fetch(`${url}/healthz`).then(
        (r) => r.status,
        () => 'refused',
      )
      expect([503, 'refused']).toContain(late)

      for (const text of await Promise.all(bodies)) expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
      const [code] = (await once(child, 'exit')) as [number]
      expect(code).toBe(0)
    } finally {
      upstream.sliceDelayMs = 0
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })

  it("a request on a kept-alive connection while draining gets a 503 in OpenAI's envelope, and the connection closes", async () => {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const { child, output } = startServer({
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_TOKEN: ADMIN,
      NVIDIA_BASE_URL: upstream.baseUrl,
      NVIDIA_API_KEY: upstream.apiKeys[0]!,
    })
    const release = upstream.hold()
    try {
      const key = await keyFor(url)
      const body = JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] })
      const head = (keepAlive: boolean) =>
        `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nconnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`
      // One connection: a first request the upstream holds (so the connection is busy, not idle),
      // then, once the drain has begun, a second one on the same connection.
      const socket = connect(port, '127.0.0.1')
      socket.setEncoding('utf8')
      let received = ''
      socket.on('data', (text: string) => (received += text))
      const ended = once(socket, 'end')
      const before = upstream.requests.length
      socket.write(head(true) + body)
      await waitFor(() => upstream.requests.length > before, 'the first request to be upstream')
      child.kill('SIGTERM')
      await waitFor(() => output().includes('shutting down'), 'the shutdown to begin')
      socket.write(head(true) + body)
      // The first request is answered in full; then the second, refused, closes the connection.
      await new Promise((resolve) => setTimeout(resolve, 100))
      release()
      await ended
      const answers = received.split(/(?=HTTP\/1\.1 )/)
      expect(answers.map((a) => a.slice(0, 12))).toEqual(['HTTP/1.1 200', 'HTTP/1.1 503'])
      expect(answers[0]).toContain('chatcmpl')
      const [headers, json] = answers[1]!.split('\r\n\r\n')
      expect(headers!.toLowerCase()).toContain('connection: close')
      expect(headers!.toLowerCase()).toContain('x-should-retry: true')
      expect(JSON.parse(json!)).toEqual({
        error: { message: expect.stringContaining('shutting down'), type: 'server_error', param: null, code: 'gateway_draining' },
      })
      const [code] = (await once(child, 'exit')) as [number]
      expect(code).toBe(0)
      // Refusing it is part of a drain: the request's line records it, and nothing is logged as an error.
      const lines = output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: number; status?: number; url?: string })
      expect(lines.filter((l) => l.status === 503 && l.url === '/v1/chat/completions')).toHaveLength(1)
      expect(lines.filter((l) => l.level >= 50)).toEqual([])
    } finally {
      release()
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })

  it('cuts what is still open at the drain timeout, and still exits 0', async () => {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const { child } = startServer({
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_TOKEN: ADMIN,
      DRAIN_TIMEOUT_MS: '300',
      NVIDIA_BASE_URL: upstream.baseUrl,
      NVIDIA_API_KEY: upstream.apiKeys[0]!,
    })
    try {
      const key = await keyFor(url)
      upstream.enqueue({ kind: 'stall-after', events: 3 })
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }], stream: true }),
      })
      expect(res.status).toBe(200)
      const body = res.text().catch(() => 'cut')
      child.kill('SIGTERM')
      const [code] = (await once(child, 'exit')) as [number]
      expect(code).toBe(0)
      expect(await body).not.toContain('[DONE]')
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })
})
