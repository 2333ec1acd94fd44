import type { ChatAnswer } from './chat-answer.js'
import type { ChatUsage, Emit, ProtocolWriter, StreamFailure } from './chat-stream.js'

/**
 * A chat completion's answer in the Responses API's shape: a whole response (output items:
 * reasoning, the message, function calls), or the stream's events (response.created, per item
 * output_item.added, its deltas and done events, response.completed with the usage). Usage is the
 * upstream's own count. The done events and the final response repeat each item whole, as the
 * protocol has them: what a stream holds is its output so far, within the gateway's stream limits.
 * Source: https://platform.openai.com/docs/api-reference/responses-streaming
 */

/** What a response repeats of its request. */
export interface ResponseEcho {
  id: string
  model: string
  createdAt: number
  original: Record<string, unknown>
}

const usageOf = (u: ChatUsage | undefined) => ({
  input_tokens: u?.prompt_tokens ?? 0,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: u?.completion_tokens ?? 0,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: u?.total_tokens ?? (u?.prompt_tokens ?? 0) + (u?.completion_tokens ?? 0),
})

type Item = Record<string, unknown>

/** The response object: done (`usage` known) or just begun. */
function response(echo: ResponseEcho, output: Item[], end: { finish: string | null; usage: ChatUsage | undefined } | null) {
  const o = echo.original
  const incomplete = end?.finish === 'length'
  return {
    id: echo.id,
    object: 'response',
    created_at: echo.createdAt,
    status: end === null ? 'in_progress' : incomplete ? 'incomplete' : 'completed',
    error: null,
    incomplete_details: incomplete ? { reason: 'max_output_tokens' } : null,
    instructions: o.instructions ?? null,
    max_output_tokens: o.max_output_tokens ?? null,
    model: echo.model,
    output,
    parallel_tool_calls: o.parallel_tool_calls ?? true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: o.temperature ?? null,
    text: { format: { type: 'text' } },
    tool_choice: o.tool_choice ?? 'auto',
    tools: o.tools ?? [],
    top_p: o.top_p ?? null,
    truncation: 'disabled',
    usage: end === null ? null : usageOf(end.usage),
    user: null,
    metadata: {},
  }
}

const reasoningItem = (id: string, text: string): Item => ({
  type: 'reasoning',
  id,
  summary: [],
  content: [{ type: 'reasoning_text', text }],
})
const messageItem = (id: string, text: string, status: string): Item => ({
  type: 'message',
  id,
  status,
  role: 'assistant',
  content: status === 'in_progress' ? [] : [{ type: 'output_text', text, annotations: [] }],
})
const callItem = (id: string, callId: string, name: string, args: string, status: string): Item => ({
  type: 'function_call',
  id,
  call_id: callId,
  name,
  arguments: args,
  status,
})

/** A whole chat completion as a response. */
export function chatToResponse(answer: ChatAnswer, echo: ResponseEcho): Record<string, unknown> {
  const output: Item[] = []
  const base = echo.id.slice('resp_'.length)
  if (answer.reasoning) output.push(reasoningItem(`rs_${base}`, answer.reasoning))
  if (answer.text) output.push(messageItem(`msg_${base}`, answer.text, 'completed'))
  for (const [i, call] of answer.calls.entries()) {
    output.push(callItem(`fc_${base}_${i}`, call.id ?? `call_${base}_${i}`, call.name, call.arguments, 'completed'))
  }
  return response(echo, output, { finish: answer.finish, usage: answer.usage })
}

/** One output item being streamed: its place, id, and what it has said so far. */
type Open =
  | { kind: 'reasoning'; index: number; id: string; text: string }
  | { kind: 'message'; index: number; id: string; text: string }
  | { kind: 'call'; index: number; id: string; call: number; callId: string; name: string; text: string }

/** The stream's events, written as the upstream's chunks are read. */
export class ResponsesStreamWriter implements ProtocolWriter {
  private sequence = 0
  private readonly output: Item[] = []
  private open: Open | null = null
  private finishReason: string | null = null
  private used: ChatUsage | undefined
  private readonly base: string

  constructor(
    private readonly emit: Emit,
    private readonly echo: ResponseEcho,
  ) {
    this.base = echo.id.slice('resp_'.length)
    const begun = response(echo, [], null)
    this.event('response.created', { response: begun })
    this.event('response.in_progress', { response: begun })
  }

  reasoning(text: string): void {
    if (this.open?.kind !== 'reasoning') {
      this.begin({ kind: 'reasoning', index: this.output.length, id: `rs_${this.base}_${this.output.length}`, text: '' })
      this.event('response.content_part.added', { ...this.at(), content_index: 0, part: { type: 'reasoning_text', text: '' } })
    }
    this.open!.text += text
    this.event('response.reasoning_text.delta', { ...this.at(), content_index: 0, delta: text })
  }

  text(text: string): void {
    if (this.open?.kind !== 'message') {
      this.begin({ kind: 'message', index: this.output.length, id: `msg_${this.base}_${this.output.length}`, text: '' })
      this.event('response.content_part.added', {
        ...this.at(),
        content_index: 0,
        part: { type: 'output_text', text: '', annotations: [] },
      })
    }
    this.open!.text += text
    this.event('response.output_text.delta', { ...this.at(), content_index: 0, delta: text, logprobs: [] })
  }

  toolCall(call: number, piece: { id?: string; name?: string; arguments?: string }): void {
    if (this.open?.kind !== 'call' || this.open.call !== call) {
      const index = this.output.length
      const callId = piece.id ?? `call_${this.base}_${call}`
      this.begin({ kind: 'call', index, id: `fc_${this.base}_${index}`, call, callId, name: piece.name ?? '', text: '' })
    }
    if (piece.arguments) {
      this.open!.text += piece.arguments
      this.event('response.function_call_arguments.delta', { ...this.at(), delta: piece.arguments })
    }
  }

  finish(reason: string): void {
    this.finishReason = reason
  }

  usage(usage: ChatUsage): void {
    this.used = usage
  }

  done(): void {
    this.close()
    const end = { finish: this.finishReason, usage: this.used }
    const done = response(this.echo, this.output, end)
    this.event(done.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: done })
  }

  /**
   * The Responses API's error event; it also carries the error in OpenAI's envelope (`error`),
   * which is what makes the OpenAI SDKs raise it as an APIError mid-stream.
   */
  fail(failure: StreamFailure): void {
    this.close()
    const error = { message: failure.message, type: failure.type, code: failure.code, param: null }
    this.event('error', { code: failure.code, message: failure.message, param: null, error })
  }

  private event(type: string, data: Record<string, unknown>): void {
    this.emit(type, { type, sequence_number: this.sequence++, ...data })
  }

  private at() {
    return { item_id: this.open!.id, output_index: this.open!.index }
  }

  private item(open: Open, status: string): Item {
    if (open.kind === 'reasoning') return reasoningItem(open.id, open.text)
    if (open.kind === 'message') return messageItem(open.id, open.text, status)
    return callItem(open.id, open.callId, open.name, open.text, status)
  }

  private begin(open: Open): void {
    this.close()
    this.open = open
    const added = open.kind === 'reasoning' ? { ...reasoningItem(open.id, ''), content: [] } : this.item(open, 'in_progress')
    this.output.push(added)
    this.event('response.output_item.added', { output_index: open.index, item: added })
  }

  private close(): void {
    const open = this.open
    if (open === null) return
    this.open = null
    if (open.kind === 'reasoning') {
      this.event('response.reasoning_text.done', { item_id: open.id, output_index: open.index, content_index: 0, text: open.text })
      this.event('response.content_part.done', {
        item_id: open.id,
        output_index: open.index,
        content_index: 0,
        part: { type: 'reasoning_text', text: open.text },
      })
    } else if (open.kind === 'message') {
      this.event('response.output_text.done', {
        item_id: open.id,
        output_index: open.index,
        content_index: 0,
        text: open.text,
        logprobs: [],
      })
      const part = { type: 'output_text', text: open.text, annotations: [] }
      this.event('response.content_part.done', { item_id: open.id, output_index: open.index, content_index: 0, part })
    } else {
      this.event('response.function_call_arguments.done', { item_id: open.id, output_index: open.index, arguments: open.text })
    }
    const done = this.item(open, 'completed')
    this.output[open.index] = done
    this.event('response.output_item.done', { output_index: open.index, item: done })
  }
}
