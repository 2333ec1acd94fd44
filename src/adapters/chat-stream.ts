import { Transform, type TransformCallback } from 'node:stream'
import { SseSplitter } from '../stream/sse.js'
import { ThinkSplitter } from './think.js'

/**
 * Reads an upstream chat completion stream (after the usage tap: already within the gateway's
 * limits, ended with an error event if it failed) one event at a time and tells a protocol writer
 * what happened: reasoning, text, tool call pieces, the finish reason, the usage, the end. The
 * writer turns each into its protocol's own events. One event is held at a time: memory stays flat.
 */

export interface ChatUsage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface StreamFailure {
  /** OpenAI's envelope fields, as the gateway wrote them into the stream. */
  code: string | null
  type: string
  message: string
}

export interface ProtocolWriter {
  reasoning(text: string): void
  text(text: string): void
  /** A piece of the tool call at `index`: its id and name come with its first piece. */
  toolCall(index: number, piece: { id?: string; name?: string; arguments?: string }): void
  /** How the answer ended; `matched` is the stop sequence that ended it, when the upstream names it. */
  finish(reason: string, matched: string | null): void
  usage(usage: ChatUsage): void
  /** The stream ended as it should ([DONE]). */
  done(): void
  /** The stream was ended by an error (or ended without [DONE]). */
  fail(failure: StreamFailure): void
}

interface Chunk {
  error?: { message?: string; type?: string; code?: string | null }
  choices?: {
    index?: number
    delta?: {
      content?: string | null
      reasoning_content?: string | null
      reasoning?: string | null
      tool_calls?: { index?: number; id?: string; function?: { name?: string; arguments?: string } }[]
    }
    finish_reason?: string | null
    /** vLLM: the stop string that ended the answer, if one did. */
    stop_reason?: unknown
  }[]
  usage?: ChatUsage | null
}

/** Writes protocol events as `event: <type>\ndata: <json>\n\n` (the writers' one format). */
export type Emit = (type: string, data: unknown) => void

export class ChatStreamTranslator extends Transform {
  private readonly splitter = new SseSplitter()
  private readonly think = new ThinkSplitter()
  private readonly writer: ProtocolWriter
  private ended = false

  constructor(makeWriter: (emit: Emit) => ProtocolWriter) {
    super()
    this.writer = makeWriter((type, data) => this.push(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`))
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      for (const event of this.splitter.push(chunk)) this.readEvent(event)
      done()
    } catch (err) {
      done(err as Error)
    }
  }

  override _flush(done: TransformCallback): void {
    if (!this.ended) this.fail({ code: 'upstream_unreachable', type: 'server_error', message: 'The upstream stream ended early.' })
    done()
  }

  private readEvent(event: Buffer): void {
    if (this.ended) return
    const data = dataOf(event)
    if (data === null) return
    if (data === '[DONE]') {
      for (const piece of this.think.end()) this.piece(piece.kind, piece.text)
      this.ended = true
      this.writer.done()
      return
    }
    let chunk: Chunk
    try {
      chunk = JSON.parse(data) as Chunk
    } catch {
      return
    }
    if (chunk.error) {
      const { message = 'The upstream stream failed.', type = 'server_error', code = null } = chunk.error
      return this.fail({ code, type, message })
    }
    const choice = chunk.choices?.find((c) => (c.index ?? 0) === 0)
    const delta = choice?.delta
    if (delta) {
      const reasoning = delta.reasoning_content ?? delta.reasoning
      if (reasoning) this.writer.reasoning(reasoning)
      if (delta.content) for (const piece of this.think.push(delta.content)) this.piece(piece.kind, piece.text)
      for (const call of delta.tool_calls ?? []) {
        this.writer.toolCall(call.index ?? 0, {
          ...(call.id ? { id: call.id } : {}),
          ...(call.function?.name ? { name: call.function.name } : {}),
          ...(call.function?.arguments ? { arguments: call.function.arguments } : {}),
        })
      }
    }
    if (choice?.finish_reason) this.writer.finish(choice.finish_reason, typeof choice.stop_reason === 'string' ? choice.stop_reason : null)
    if (chunk.usage) this.writer.usage(chunk.usage)
  }

  private piece(kind: 'reasoning' | 'text', text: string): void {
    if (kind === 'reasoning') this.writer.reasoning(text)
    else this.writer.text(text)
  }

  private fail(failure: StreamFailure): void {
    this.ended = true
    this.writer.fail(failure)
  }
}

/** An event's data (its `data:` lines joined), or null for a comment or an event without data. */
function dataOf(event: Buffer): string | null {
  let data: string | null = null
  for (const line of event.toString('utf8').split(/\r?\n/)) {
    if (!line.startsWith('data:')) continue
    const value = line.slice(5).replace(/^ /, '')
    data = data === null ? value : `${data}\n${value}`
  }
  return data
}
