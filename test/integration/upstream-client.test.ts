import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { Cancel } from '../../src/upstream/abort.js'
import { ERROR_BODY_LIMIT, readAll, readLimited, UpstreamClient, WholeBody, type UpstreamRequest } from '../../src/upstream/client.js'
import { waitFor } from '../helpers/wait.js'

/**
 * The upstream client against a raw HTTP server that misbehaves byte by byte: answers read whole
 * (undici's dispatch), cut off, stalled, and abandoned by the client at every stage.
 */

let server: Server
let client: UpstreamClient
/** How the server answers the next request, and the responses it saw closed before it finished them. */
let answer: (req: IncomingMessage, res: ServerResponse) => void = () => undefined
let closedEarly = 0
let received = 0

beforeAll(async () => {
  server = createServer((req, res) => {
    received++
    res.on('close', () => {
      if (!res.writableFinished) closedEarly++
    })
    req.resume()
    req.once('end', () => answer(req, res))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`
  const upstream = loadConfig({ NVIDIA_BASE_URL: base, NVIDIA_API_KEY: 'nvapi-made-up-test-key-0001' }).upstreams.nvidia!
  client = new UpstreamClient({ ...upstream, timeouts: { ...upstream.timeouts, headersMs: 2_000, idleMs: 200 } })
})
afterAll(async () => {
  await client.close()
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

const request = (signal?: Cancel): UpstreamRequest => ({
  path: '/chat/completions',
  method: 'POST',
  body: '{"model":"m"}',
  stream: false,
  requestId: 'req-1',
  ...(signal ? { signal } : {}),
})
const send = (signal?: Cancel) => client.request(request(signal), 'nvapi-made-up-test-key-0001')

describe('an answer read whole', () => {
  it('arrives whole however it is cut, with its status and headers, and what was sent is what the upstream expects', async () => {
    let seen: IncomingMessage | null = null
    answer = (req, res) => {
      seen = req
      res.writeHead(200, { 'content-type': 'application/json', 'X-Extra': 'yes' })
      res.write('{"id":"a",')
      setTimeout(() => res.write('"text":"héllo"'), 10)
      setTimeout(() => res.end(',"n":1}'), 20)
    }
    const res = await send()
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('application/json')
    expect(res.headers['x-extra']).toBe('yes')
    expect(res.body).toBeInstanceOf(WholeBody)
    expect((await readAll(res.body)).toString('utf8')).toBe('{"id":"a","text":"héllo","n":1}')
    expect(seen!.headers).toMatchObject({
      authorization: 'Bearer nvapi-made-up-test-key-0001',
      accept: 'application/json',
      'content-type': 'application/json',
      'x-request-id': 'req-1',
    })
  })

  it(`keeps the first ${ERROR_BODY_LIMIT / 1024} KB of a huge error answer and cuts the rest off`, async () => {
    const size = 32 * 1024 * 1024
    const chunk = 'x'.repeat(64 * 1024)
    let sent = 0
    let closed = false
    answer = (_req, res) => {
      res.once('close', () => (closed = true))
      res.writeHead(400, { 'content-type': 'text/plain' })
      // Written as the connection takes it: what was sent when it closes is what was asked for.
      const pump = () => {
        while (sent < size && !closed) {
          sent += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        if (!closed) res.end()
      }
      pump()
    }
    const res = await send()
    expect(res.statusCode).toBe(400)
    expect(await readLimited(res.body)).toBe('x'.repeat(ERROR_BODY_LIMIT))
    // The connection closes with most of the answer never sent: it was not read to its end.
    await waitFor(() => closed, 'the upstream connection to close')
    expect(sent).toBeLessThan(size / 2)
  })

  it('fails with the idle timeout when the body stalls after the headers', async () => {
    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"id":')
    }
    const res = await send()
    await expect(readAll(res.body)).rejects.toMatchObject({ code: 'UND_ERR_BODY_TIMEOUT' })
  })

  it('fails when the upstream breaks the connection part way through the body', async () => {
    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' })
      res.write('{"id":"cut"', () => res.socket!.destroy())
    }
    const res = await send()
    expect(res.statusCode).toBe(200)
    await expect(readAll(res.body)).rejects.toMatchObject({ code: 'UND_ERR_SOCKET' })
  })
})

describe('a client that goes away', () => {
  it('before the headers: the request fails and the upstream sees it closed', async () => {
    const before = closedEarly
    const sent = received
    answer = () => undefined // never answers
    const cancel = new Cancel()
    const pending = send(cancel)
    await waitFor(() => received === sent + 1, 'the request to reach the upstream')
    cancel.abort()
    await expect(pending).rejects.toThrow('The client closed the connection.')
    await waitFor(() => closedEarly === before + 1, 'the upstream to see the request closed')
  })

  it('while the body arrives: reading it fails and the upstream sees it closed', async () => {
    const before = closedEarly
    answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write('{"partial":')
    }
    const cancel = new Cancel()
    const res = await send(cancel)
    cancel.abort()
    await expect(readAll(res.body)).rejects.toThrow('The client closed the connection.')
    await waitFor(() => closedEarly === before + 1, 'the upstream to see the request closed')
  })

  it('before the request is sent: it never reaches the upstream', async () => {
    const sent = received
    const cancel = new Cancel()
    cancel.abort()
    await expect(send(cancel)).rejects.toThrow('The client closed the connection.')
    answer = (_req, res) => res.end('{}')
    expect((await send()).statusCode).toBe(200)
    expect(received).toBe(sent + 1)
  })
})
