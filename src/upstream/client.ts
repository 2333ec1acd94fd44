import { Pool, type Dispatcher } from 'undici'
import type { UpstreamConfig } from '../config.js'
import type { Cancel } from './abort.js'

export interface UpstreamRequest {
  /** Path under the upstream's base URL: `/chat/completions`. */
  path: string
  method: 'GET' | 'POST'
  body?: string
  /** What the client accepts; the upstream's answer decides the content type. */
  accept: string
  requestId: string
  /** Aborts the upstream request (and its body) when it fires. */
  signal?: Cancel
  /** Overrides the upstream's time-to-headers timeout for this call. */
  headersTimeoutMs?: number
}

const USER_AGENT = 'tollgate/0.1'

/**
 * One upstream: a keep-alive undici pool to its origin and its stored API keys. Requests are built
 * from scratch (never from the client's headers), so no client credential, cookie or hop-by-hop
 * header can reach the upstream.
 */
export class UpstreamClient {
  readonly name: string
  private readonly pool: Pool
  private readonly basePath: string
  private readonly keys: readonly string[]

  constructor(readonly config: UpstreamConfig) {
    this.name = config.name
    const url = new URL(config.baseUrl)
    this.basePath = url.pathname.replace(/\/+$/, '')
    this.keys = config.apiKeys
    this.pool = new Pool(url.origin, {
      connect: { timeout: config.timeouts.connectMs },
      headersTimeout: config.timeouts.headersMs,
      bodyTimeout: config.timeouts.idleMs,
      keepAliveTimeout: 30_000,
    })
  }

  get hasKeys(): boolean {
    return this.keys.length > 0
  }

  /** Sends a request with the given stored key (chosen by the key pool), or none. */
  request(req: UpstreamRequest, key: string | undefined): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = {
      accept: req.accept,
      'user-agent': USER_AGENT,
      'x-request-id': req.requestId,
    }
    if (req.body !== undefined) headers['content-type'] = 'application/json'
    if (key !== undefined) headers.authorization = `Bearer ${key}`
    return this.pool.request({
      path: this.basePath + req.path,
      method: req.method,
      headers,
      body: req.body,
      signal: req.signal,
      ...(req.headersTimeoutMs !== undefined ? { headersTimeout: req.headersTimeoutMs } : {}),
    })
  }

  /** Replaces every stored key in a text with [redacted], for messages that leave the gateway. */
  scrub(text: string): string {
    let out = text
    for (const key of this.keys) if (key) out = out.split(key).join('[redacted]')
    return out.replace(/nvapi-[A-Za-z0-9_-]+/g, 'nvapi-[redacted]')
  }

  close(): Promise<void> {
    return this.pool.close()
  }
}

/**
 * A whole body as one buffer: the chunks as they come, joined once (a one-chunk answer is not
 * copied at all; undici's arrayBuffer() always copies, and its bookkeeping showed in profiles).
 */
export function readAll(body: Dispatcher.ResponseData['body']): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    body.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      size += chunk.length
    })
    body.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)))
    body.once('error', reject)
  })
}

/** Reads at most `limit` bytes of a body as text and discards the rest. */
export async function readLimited(body: Dispatcher.ResponseData['body'], limit = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    const buf = chunk as Buffer
    if (size < limit) chunks.push(buf.subarray(0, limit - size))
    size += buf.length
    if (size >= limit) break
  }
  if (size >= limit) body.destroy()
  return Buffer.concat(chunks).toString('utf8')
}
