import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/**
 * A real HTTP server that talks like NVIDIA's API catalog (docs/nvidia.md): strict request
 * schema (422 on unknown fields), its error shapes, vLLM-style SSE written in small slices at odd
 * byte offsets (inside multi-byte characters too) with `: keep-alive` comments, a usage chunk
 * only when stream_options.include_usage is set, and slow and hanging modes. It records what it
 * received and the exact bytes it streamed.
 */

export interface Recorded {
  method: string
  path: string
  headers: IncomingMessage['headers']
  raw: string
  body: Record<string, unknown> | undefined
}

/** What the next request gets instead of the normal answer. */
export type Behaviour =
  | { kind: 'error'; status: number; body: string; contentType?: string; headers?: Record<string, string> }
  | { kind: 'hang' } // never answers
  | { kind: 'stall-after'; events: number } // streams some events, then goes silent
  | { kind: 'queued'; polls: number } // 202 with an NVCF-REQID; its status answers 202 `polls - 1` times, then the answer
  | { kind: 'custom'; answer: (res: ServerResponse, body: Record<string, unknown> | undefined) => void | Promise<void> } // a misbehaving upstream

/** Text with 2-, 3- and 4-byte UTF-8 characters, so slices land inside them. */
export const STREAM_TEXT = '<think>The user greets me.</think>Héllo wörld! Grüße aus Zürich — 你好，世界 🙂🚀 naïve café ∑ ✓ end.'

export const UPSTREAM_MODELS = ['minimaxai/minimax-m2.1', 'meta/llama-3.1-8b-instruct', 'nvidia/nv-embedqa-e5-v5']

/** Top-level fields NVIDIA's schema accepts for chat; anything else is a 422, as upstream. */
const CHAT_FIELDS = new Set([
  'model',
  'messages',
  'temperature',
  'top_p',
  'max_tokens',
  'stream',
  'stream_options',
  'stop',
  'seed',
  'frequency_penalty',
  'presence_penalty',
  'tools',
  'tool_choice',
  'n',
  'response_format',
  'user',
])
const COMPLETION_FIELDS = new Set([
  'model',
  'prompt',
  'temperature',
  'top_p',
  'max_tokens',
  'stream',
  'stream_options',
  'stop',
  'seed',
  'n',
  'user',
])
const EMBEDDING_FIELDS = new Set(['model', 'input', 'encoding_format', 'input_type', 'truncate', 'dimensions', 'user'])

/** Slice sizes cycled over when streaming: small and odd, so boundaries fall everywhere. */
const SLICES = [1, 3, 7, 2, 13, 5, 1, 11, 4, 17]

export function usageFor(body: Record<string, unknown>, completionTokens: number) {
  const promptTokens = Math.max(1, Math.ceil(JSON.stringify(body.messages ?? body.prompt ?? body.input ?? '').length / 4))
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens }
}

/** The text split into per-event pieces (whole characters: splitting bytes is the slicer's job). */
export function pieces(text: string): string[] {
  const chars = [...text]
  const out: string[] = []
  for (let i = 0; i < chars.length; i += 3) out.push(chars.slice(i, i + 3).join(''))
  return out
}

/** Which stored key a recorded request carried. */
export const keyOf = (r: Recorded) => String(r.headers.authorization ?? '').replace(/^Bearer /, '')

export class FakeUpstream {
  readonly requests: Recorded[] = []
  /** Exact bytes of each streamed body, in order. */
  readonly streams: Buffer[] = []
  /** Exact text of each JSON answer, in order. */
  readonly bodies: string[] = []
  /** Responses the client side closed before they were complete. */
  closedEarly = 0
  private readonly behaviours: Behaviour[] = []
  private readonly sockets = new Set<Socket>()
  private server: Server | null = null
  private port = 0
  /** Delay between stream slices; 0 writes them on consecutive turns of the event loop. */
  sliceDelayMs = 0
  /** Keys that get 429 (with this retry-after, in seconds) while they are in here. */
  readonly limitedKeys = new Map<string, string>()
  /** Requests queued (NVCF-REQID), with the polls each still answers 202 to. */
  private readonly queued = new Map<string, { path: string; body: Record<string, unknown>; left: number }>()
  /** While set, answers wait for it (requests are recorded as they arrive). */
  private gate: Promise<void> | null = null

  constructor(readonly apiKeys: string[] = ['nvapi-test-upstream-key-0001']) {}

  /** Where NVCF's status endpoint for queued requests is (NVIDIA_STATUS_URL). */
  get statusUrl(): string {
    return `http://127.0.0.1:${this.port}/v2/nvcf/pexec/status`
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}/v1`
  }

  /** Holds every answer from now until the returned function is called: the requests stay in flight. */
  hold(): () => void {
    let release!: () => void
    this.gate = new Promise((resolve) => (release = resolve))
    return () => {
      this.gate = null
      release()
    }
  }

  /** The next request gets this instead of the normal answer. */
  enqueue(...behaviours: Behaviour[]): void {
    this.behaviours.push(...behaviours)
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res))
    this.server.on('connection', (socket) => {
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    this.port = (this.server.address() as AddressInfo).port
    return this
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    if (this.server) await new Promise((resolve) => this.server!.close(resolve))
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const raw = Buffer.concat(chunks).toString('utf8')
    let body: Record<string, unknown> | undefined
    try {
      body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined
    } catch {
      body = undefined
    }
    const path = (req.url ?? '').split('?')[0] ?? ''
    this.requests.push({ method: req.method ?? '', path, headers: req.headers, raw, body })
    res.setHeader('nvcf-reqid', `req-${this.requests.length}`)
    res.on('close', () => {
      if (!res.writableFinished) this.closedEarly++
    })

    if (req.method === 'GET' && path === '/v1/models') {
      return this.json(res, 200, {
        object: 'list',
        data: UPSTREAM_MODELS.map((id) => ({ id, object: 'model', created: 1_735_689_600, owned_by: id.split('/')[0] })),
      })
    }

    // Authorization, as NVIDIA does it.
    const auth = req.headers.authorization
    if (!auth) {
      res.writeHead(401, { 'content-type': 'text/plain' })
      return void res.end("Header of type 'authorization' was missing")
    }
    if (!this.apiKeys.some((k) => auth === `Bearer ${k}`)) {
      return this.json(res, 403, { status: 403, title: 'Forbidden', detail: 'Authorization failed' })
    }

    const limited = this.limitedKeys.get(auth.slice('Bearer '.length))
    if (limited !== undefined) {
      res.setHeader('retry-after', limited)
      return this.json(res, 429, { status: 429, title: 'Too Many Requests' })
    }

    // NVCF's status endpoint for queued requests (NVIDIA_STATUS_URL = this origin + /v2/nvcf/pexec/status).
    const status = /^\/v2\/nvcf\/pexec\/status\/(.+)$/.exec(path)
    if (req.method === 'GET' && status) {
      const queued = this.queued.get(decodeURIComponent(status[1]!))
      if (!queued) return this.json(res, 404, { status: 404, title: 'Not Found', detail: 'No such request' })
      if (queued.left-- > 1) {
        res.writeHead(202, { 'nvcf-reqid': status[1]!, 'nvcf-status': 'pending-evaluation' })
        return void res.end()
      }
      this.queued.delete(decodeURIComponent(status[1]!))
      if (queued.body.stream === true) return this.stream(res, queued.path, queued.body, null)
      return this.complete(res, queued.path, queued.body)
    }

    if (this.gate !== null) await this.gate
    const behaviour = this.behaviours.shift()
    if (behaviour?.kind === 'hang') return
    if (behaviour?.kind === 'custom') return void (await behaviour.answer(res, body))
    if (behaviour?.kind === 'queued' && body) {
      const id = `queued-${this.requests.length}`
      this.queued.set(id, { path, body, left: behaviour.polls })
      res.writeHead(202, { 'nvcf-reqid': id, 'nvcf-status': 'pending-evaluation' })
      return void res.end()
    }
    if (behaviour?.kind === 'error') {
      res.writeHead(behaviour.status, { 'content-type': behaviour.contentType ?? 'application/json', ...behaviour.headers })
      return void res.end(behaviour.body)
    }

    if (!body) return this.json(res, 400, { error: 'Expecting value: line 1 column 1 (char 0)' })
    const allowed =
      path === '/v1/chat/completions'
        ? CHAT_FIELDS
        : path === '/v1/completions'
          ? COMPLETION_FIELDS
          : path === '/v1/embeddings'
            ? EMBEDDING_FIELDS
            : null
    if (!allowed) return this.json(res, 404, { status: 404, title: 'Not Found', detail: `Path ${path} not found` })
    const extra = Object.keys(body).find((k) => !allowed.has(k))
    if (extra) return this.json(res, 422, { error: `body -> ${extra}\n  Extra inputs are not permitted (type=extra_forbidden)` })
    if (body.stream_options !== undefined && body.stream !== true) {
      return this.json(res, 400, {
        error: {
          message: "Validation: The 'stream_options' field is only allowed when 'stream' is set to true.",
          type: 'BadRequestError',
          code: 400,
        },
      })
    }
    const model = body.model as string
    if (!UPSTREAM_MODELS.includes(model)) {
      return this.json(res, 404, { status: 404, title: 'Not Found', detail: `Function '${model}': Not found for account 'acct-test'` })
    }

    if (path === '/v1/embeddings') return this.embeddings(res, body)
    if (body.stream === true) return this.stream(res, path, body, behaviour?.kind === 'stall-after' ? behaviour.events : null)
    return this.complete(res, path, body)
  }

  private json(res: ServerResponse, status: number, data: unknown): void {
    const text = JSON.stringify(data)
    this.bodies.push(text)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }

  /**
   * The tool calls of an answer, as a model would make them: the first tool, with a city for its
   * arguments (the first two at once when the last user message asks for them "in parallel"); none
   * once the last message is a tool's result, or with tool_choice "none".
   */
  toolCalls(body: Record<string, unknown>): { id: string; type: 'function'; function: { name: string; arguments: string } }[] {
    const tools = (body.tools as { function: { name: string } }[] | undefined) ?? []
    const messages = (body.messages as { role: string; content: unknown }[] | undefined) ?? []
    if (tools.length === 0 || body.tool_choice === 'none' || messages.at(-1)?.role === 'tool') return []
    const lastUser = JSON.stringify(messages.filter((m) => m.role === 'user').at(-1)?.content ?? '')
    const called = lastUser.includes('in parallel') ? tools.slice(0, 2) : tools.slice(0, 1)
    return called.map((t, i) => ({
      id: `call_fake_${i + 1}`,
      type: 'function',
      function: { name: t.function.name, arguments: '{"city":"Zürich"}' },
    }))
  }

  private complete(res: ServerResponse, path: string, body: Record<string, unknown>): void {
    const text = STREAM_TEXT
    const usage = usageFor(body, pieces(text).length)
    const created = 1_764_460_800
    if (path === '/v1/completions') {
      return this.json(res, 200, {
        id: 'cmpl-fake',
        object: 'text_completion',
        created,
        model: body.model,
        choices: [{ index: 0, text, finish_reason: 'stop', logprobs: null, stop_reason: null }],
        usage,
      })
    }
    const calls = this.toolCalls(body)
    const call = calls.length > 0
    const message = call
      ? { role: 'assistant', content: null, tool_calls: calls }
      : { role: 'assistant', content: text, reasoning_content: null, tool_calls: [] }
    this.json(res, 200, {
      id: 'chatcmpl-fake',
      object: 'chat.completion',
      created,
      model: body.model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: call ? 'tool_calls' : 'stop', stop_reason: null }],
      usage,
      prompt_logprobs: null,
    })
  }

  private embeddings(res: ServerResponse, body: Record<string, unknown>): void {
    const inputs = Array.isArray(body.input) ? body.input : [body.input]
    this.json(res, 200, {
      object: 'list',
      model: body.model,
      data: inputs.map((input, index) => ({
        object: 'embedding',
        index,
        embedding: [0.125, -0.5, String(input).length / 100, 0.75],
      })),
      usage: { prompt_tokens: inputs.length * 3, total_tokens: inputs.length * 3 },
    })
  }

  /** The SSE events of one answer, as NVIDIA (vLLM) writes them. */
  events(path: string, body: Record<string, unknown>): string[] {
    const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true
    const usageField = includeUsage ? ',"usage":null' : ''
    const id = 'chatcmpl-fake-stream'
    const head = `"id":"${id}","object":"${path === '/v1/completions' ? 'text_completion' : 'chat.completion.chunk'}","created":1764460800,"model":${JSON.stringify(body.model)}`
    const parts = pieces(STREAM_TEXT)
    const events: string[] = []
    const chat = path === '/v1/chat/completions'
    if (chat)
      events.push(
        `data: {${head},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${usageField}}\n\n`,
      )
    const calls = chat ? this.toolCalls(body) : []
    // Tool calls stream as vLLM writes them: the id and name first, then the arguments in pieces.
    calls.forEach((c, index) => {
      const start = { index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }
      events.push(
        `data: {${head},"choices":[{"index":0,"delta":{"tool_calls":[${JSON.stringify(start)}]},"logprobs":null,"finish_reason":null}]${usageField}}\n\n`,
      )
      for (const piece of [c.function.arguments.slice(0, 5), c.function.arguments.slice(5)]) {
        const delta = { tool_calls: [{ index, function: { arguments: piece } }] }
        events.push(
          `data: {${head},"choices":[{"index":0,"delta":${JSON.stringify(delta)},"logprobs":null,"finish_reason":null}]${usageField}}\n\n`,
        )
      }
    })
    ;(calls.length > 0 ? [] : parts).forEach((p, i) => {
      const choice = chat
        ? `{"index":0,"delta":{"content":${JSON.stringify(p)}},"logprobs":null,"finish_reason":null,"token_ids":null}`
        : `{"index":0,"text":${JSON.stringify(p)},"logprobs":null,"finish_reason":null,"stop_reason":null}`
      events.push(`data: {${head},"choices":[${choice}]${usageField}}\n\n`)
      if (i % 10 === 4) events.push(': keep-alive\n\n')
    })
    const last = chat
      ? `{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"${calls.length > 0 ? 'tool_calls' : 'stop'}","stop_reason":null}`
      : `{"index":0,"text":"","logprobs":null,"finish_reason":"stop","stop_reason":null}`
    events.push(`data: {${head},"choices":[${last}]${usageField}}\n\n`)
    if (includeUsage) events.push(`data: {${head},"choices":[],"usage":${JSON.stringify(usageFor(body, parts.length))}}\n\n`)
    events.push('data: [DONE]\n\n')
    return events
  }

  private async stream(res: ServerResponse, path: string, body: Record<string, unknown>, stallAfter: number | null): Promise<void> {
    const events = this.events(path, body)
    const bytes = Buffer.from((stallAfter === null ? events : events.slice(0, stallAfter)).join(''), 'utf8')
    this.streams.push(bytes)
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' })
    let offset = 0
    for (let i = 0; offset < bytes.length; i++) {
      if (res.destroyed) return
      const size = SLICES[i % SLICES.length]!
      res.write(bytes.subarray(offset, offset + size))
      offset += size
      await new Promise((resolve) => (this.sliceDelayMs > 0 ? setTimeout(resolve, this.sliceDelayMs) : setImmediate(resolve)))
    }
    if (stallAfter === null) res.end()
  }
}
