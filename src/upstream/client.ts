import type { IncomingHttpHeaders } from 'node:http'
import { Agent, Pool, type Dispatcher } from 'undici'
import type { UpstreamConfig } from '../config.js'
import type { Cancel } from './abort.js'
import { KeyErrors, KeyRefusals } from './key-events.js'
import { scrubSecrets, secretPattern } from './scrub.js'

export interface UpstreamRequest {
  /** Path under the upstream's base URL: `/chat/completions`. */
  path: string
  method: 'GET' | 'POST'
  body?: string
  /**
   * A stream (sent as `accept: text/event-stream`, the answer passed on as it arrives) or not (JSON,
   * read whole: WholeBody). The upstream's answer decides the content type.
   */
  stream: boolean
  requestId: string
  /** Aborts the upstream request (and its body) when it fires. */
  signal?: Cancel
  /** Overrides the upstream's time-to-headers timeout for this call. */
  headersTimeoutMs?: number
  /** The most bytes of a whole answer read; past it the answer fails with AnswerTooLarge. */
  maxBytes?: number
}

const USER_AGENT = 'tollgate/0.1'
/** The longest one status call is held by the upstream (NVCF-POLL-SECONDS). */
const MAX_POLL_SECONDS = 60
/** The most of an error answer that is kept (its message); the rest is not read. */
export const ERROR_BODY_LIMIT = 64 * 1024

/** An answer longer than the gateway reads whole. */
export class AnswerTooLarge extends Error {
  readonly code = 'TG_ANSWER_TOO_LARGE'
  constructor(readonly limit: number) {
    super(`The upstream's answer passed the gateway's limit of ${limit} bytes.`)
    this.name = 'AnswerTooLarge'
  }
}

/** A streamed answer's body, as undici's request() gives it. */
export type StreamBody = Dispatcher.ResponseData['body']

export interface UpstreamResponse {
  statusCode: number
  headers: IncomingHttpHeaders
  body: StreamBody | WholeBody
}

/**
 * One upstream: a keep-alive undici pool to its origin and its stored API keys. Requests are built
 * from scratch (never from the client's headers), so no client credential, cookie or hop-by-hop
 * header can reach the upstream.
 */
export class UpstreamClient {
  readonly name: string
  private readonly pool: Pool
  /** For polling queued requests, whose status endpoint may be on another origin. */
  private readonly statusAgent: Agent
  private readonly basePath: string
  private readonly keys: readonly string[]
  /** What this instance has seen of its keys being refused (dispatch decides with it). */
  readonly refusals = new KeyRefusals()
  readonly keyErrors = new KeyErrors()
  /** Every encoding of every key, found at start-up (scrub runs on error paths only). */
  private readonly secrets: ReturnType<typeof secretPattern>

  constructor(readonly config: UpstreamConfig) {
    this.name = config.name
    const url = new URL(config.baseUrl)
    this.basePath = url.pathname.replace(/\/+$/, '')
    this.keys = config.apiKeys
    this.secrets = secretPattern(config.apiKeys)
    this.pool = new Pool(url.origin, {
      connect: { timeout: config.timeouts.connectMs },
      headersTimeout: config.timeouts.headersMs,
      bodyTimeout: config.timeouts.idleMs,
      keepAliveTimeout: 30_000,
    })
    this.statusAgent = new Agent({
      connect: { timeout: config.timeouts.connectMs },
      bodyTimeout: config.timeouts.idleMs,
      keepAliveTimeout: 30_000,
    })
  }

  get hasKeys(): boolean {
    return this.keys.length > 0
  }

  /** Sends a request with the given stored key (chosen by the key pool), or none. */
  request(req: UpstreamRequest, key: string | undefined): Promise<UpstreamResponse> {
    const headers: Record<string, string> = {
      accept: req.stream ? 'text/event-stream' : 'application/json',
      'user-agent': USER_AGENT,
      'x-request-id': req.requestId,
    }
    if (req.body !== undefined) headers['content-type'] = 'application/json'
    if (key !== undefined) headers.authorization = `Bearer ${key}`
    const options: Dispatcher.DispatchOptions = {
      path: this.basePath + req.path,
      method: req.method,
      headers,
      body: req.body,
      ...(req.headersTimeoutMs !== undefined ? { headersTimeout: req.headersTimeoutMs } : {}),
    }
    if (req.stream) return this.pool.request({ ...options, signal: req.signal })
    return new Promise((resolve, reject) => this.pool.dispatch(options, new WholeBody(resolve, reject, req.signal, req.maxBytes)))
  }

  /**
   * Asks after a request the upstream queued (a 202 with its NVCF-REQID), with the key that sent
   * it. The status endpoint holds the call up to NVCF-POLL-SECONDS for the result, and answers 202
   * again while there is none; the result is the answer the request itself would have had.
   */
  poll(id: string, key: string | undefined, stream: boolean, signal: Cancel | undefined, waitMs: number): Promise<UpstreamResponse> {
    const headers: Record<string, string> = {
      accept: stream ? 'text/event-stream' : 'application/json',
      'user-agent': USER_AGENT,
      'nvcf-poll-seconds': String(Math.max(1, Math.min(MAX_POLL_SECONDS, Math.floor(waitMs / 1000)))),
    }
    if (key !== undefined) headers.authorization = `Bearer ${key}`
    const url = `${this.config.statusUrl}/${encodeURIComponent(id)}`
    return this.statusAgent.request({
      origin: new URL(url).origin,
      path: new URL(url).pathname,
      method: 'GET',
      headers,
      signal,
      headersTimeout: waitMs + 5_000,
    })
  }

  /** Replaces every stored key, in any encoding, with [redacted], for messages that leave the gateway. */
  scrub(text: string): string {
    return scrubSecrets(text, this.secrets)
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.close(), this.statusAgent.close()])
  }
}

/**
 * An answer read whole (a JSON answer, an error), straight from undici's dispatch: no stream, and
 * the client's cancellation watched here instead of by undici. undici's request() makes a Readable
 * per answer and its own abort handling per request: reading answers whole through it cost the
 * gateway more CPU per request than this (bench/ab.ts). It is its own dispatch handler: the
 * request's promise resolves when the headers come, with this as the body, which keeps arriving.
 *
 * Of an error answer (status 400 and up) the first ERROR_BODY_LIMIT bytes are kept and the
 * request is then cut off, as with a streamed error answer.
 */
export class WholeBody implements Dispatcher.DispatchHandler {
  private readonly chunks: Buffer[] = []
  private size = 0
  private limit = Number.POSITIVE_INFINITY
  private controller: Dispatcher.DispatchController | null = null
  private started = false
  /** null while the body is still arriving; then true, or the error that ended it. */
  private ended: true | Error | null = null
  /** Made when something waits for the end, and settled at the end. */
  private waiting: { promise: Promise<void>; resolve: () => void } | null = null
  private readonly onAbort = () => this.controller?.abort(new Error('The client closed the connection.'))

  constructor(
    private readonly resolve: (res: UpstreamResponse) => void,
    private readonly reject: (err: Error) => void,
    private readonly signal: Cancel | undefined,
    private readonly maxBytes = Number.POSITIVE_INFINITY,
  ) {}

  /** Called again should undici retry the request on another connection. */
  onRequestStart(controller: Dispatcher.DispatchController): void {
    const first = this.controller === null
    this.controller = controller
    if (this.signal === undefined) return
    if (this.signal.aborted) this.onAbort()
    else if (first) this.signal.once('abort', this.onAbort)
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.started = true
    if (statusCode >= 400) this.limit = ERROR_BODY_LIMIT
    this.resolve({ statusCode, headers, body: this })
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.ended !== null) return
    if (this.size + chunk.length > this.maxBytes && this.limit > this.maxBytes) {
      // An answer past the gateway's limit is let go, not kept: its memory is bounded.
      this.chunks.length = 0
      this.end(new AnswerTooLarge(this.maxBytes))
      controller.abort(new AnswerTooLarge(this.maxBytes))
      return
    }
    const room = this.limit - this.size
    this.chunks.push(room < chunk.length ? chunk.subarray(0, room) : chunk)
    this.size += Math.min(room, chunk.length)
    if (this.size >= this.limit) {
      this.end(true)
      controller.abort(new Error('error answer cut off at its limit'))
    }
  }

  onResponseEnd(): void {
    this.end(true)
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (!this.started) {
      this.signal?.off('abort', this.onAbort)
      this.reject(err)
    } else this.end(err)
  }

  private end(how: true | Error): void {
    if (this.ended !== null) return
    this.ended = how
    this.signal?.off('abort', this.onAbort)
    this.waiting?.resolve()
  }

  private async done(): Promise<void> {
    if (this.ended === null) {
      if (this.waiting === null) {
        let resolve!: () => void
        const promise = new Promise<void>((r) => (resolve = r))
        this.waiting = { promise, resolve }
      }
      await this.waiting.promise
    }
    if (this.ended !== true) throw this.ended
  }

  /** The whole body (a one-chunk answer is not copied). */
  async whole(): Promise<Buffer> {
    await this.done()
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size)
  }

  async text(): Promise<string> {
    return (await this.whole()).toString('utf8')
  }

  /** Waits for the end of an answer that is not wanted (what is kept of an error answer is small). */
  async dump(): Promise<void> {
    await this.done()
  }
}

/**
 * A whole body as one buffer: the chunks as they come, joined once (a one-chunk answer is not
 * copied at all; undici's arrayBuffer() always copies, and its bookkeeping showed in profiles).
 */
export function readAll(body: StreamBody | WholeBody, maxBytes = Number.POSITIVE_INFINITY): Promise<Buffer> {
  if (body instanceof WholeBody) return body.whole()
  return new Promise((resolve, reject) => {
    let chunks: Buffer[] = []
    let size = 0
    body.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBytes) {
        chunks = []
        body.destroy(new AnswerTooLarge(maxBytes))
        return
      }
      chunks.push(chunk)
    })
    body.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)))
    body.once('error', reject)
  })
}

/** Reads at most `limit` bytes of a body as text and discards the rest. */
export async function readLimited(body: StreamBody | WholeBody, limit = ERROR_BODY_LIMIT): Promise<string> {
  if (body instanceof WholeBody) return (await body.whole()).subarray(0, limit).toString('utf8')
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
