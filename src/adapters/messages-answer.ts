import type { ChatAnswer } from './chat-answer.js'
import type { ChatUsage, Emit, ProtocolWriter, StreamFailure } from './chat-stream.js'

/**
 * A chat completion's answer in Anthropic's Messages shape: a whole message, or the stream's
 * events (message_start, content_block_start/delta/stop for thinking, text and tool_use blocks,
 * message_delta with the stop reason and usage, message_stop), and errors in Anthropic's envelope.
 * Usage is the upstream's own count. Source: https://docs.anthropic.com/en/api/messages-streaming
 */

export const STOP_REASONS: Record<string, string> = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  function_call: 'tool_use',
  content_filter: 'refusal',
}

/** The stop reason, and the stop sequence that ended the answer (vLLM names it in `stop_reason`). */
function stopOf(finish: string | null | undefined, matched: unknown, sequences: readonly string[]) {
  if (finish === 'stop' && typeof matched === 'string' && sequences.includes(matched)) {
    return { stop_reason: 'stop_sequence', stop_sequence: matched }
  }
  return { stop_reason: STOP_REASONS[finish ?? 'stop'] ?? 'end_turn', stop_sequence: null }
}

const usageOf = (u: Partial<ChatUsage> | undefined) => ({
  input_tokens: u?.prompt_tokens ?? 0,
  output_tokens: u?.completion_tokens ?? 0,
  cache_creation_input_tokens: null,
  cache_read_input_tokens: null,
})

/** Tool arguments as an object: JSON the model wrote, or the raw text kept under `_raw` when it is not JSON. */
function inputOf(args: string | undefined): unknown {
  if (!args) return {}
  try {
    return JSON.parse(args) as unknown
  } catch {
    return { _raw: args }
  }
}

/** A whole chat completion as an Anthropic message. */
export function chatToMessage(answer: ChatAnswer, id: string, model: string, stopSequences: readonly string[]): Record<string, unknown> {
  const content: Record<string, unknown>[] = []
  if (answer.reasoning) content.push({ type: 'thinking', thinking: answer.reasoning, signature: '' })
  if (answer.text) content.push({ type: 'text', text: answer.text })
  for (const [i, call] of answer.calls.entries()) {
    content.push({ type: 'tool_use', id: call.id ?? `toolu_${id}_${i}`, name: call.name, input: inputOf(call.arguments) })
  }
  return {
    id,
    type: 'message',
    role: 'assistant',
    model,
    content,
    ...stopOf(answer.finish, answer.matched, stopSequences),
    usage: usageOf(answer.usage),
  }
}

/** Anthropic's error types by status. Source: https://docs.anthropic.com/en/api/errors */
export function anthropicErrorType(status: number): string {
  if (status === 400 || status === 422) return 'invalid_request_error'
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 413) return 'request_too_large'
  if (status === 429) return 'rate_limit_error'
  if (status === 503 || status === 529) return 'overloaded_error'
  return 'api_error'
}

export const anthropicError = (status: number, message: string) => ({ type: 'error', error: { type: anthropicErrorType(status), message } })

type Block = { kind: 'thinking' | 'text' } | { kind: 'tool_use'; call: number }

/** The stream's events, written as the upstream's chunks are read. */
export class MessagesStreamWriter implements ProtocolWriter {
  private index = -1
  private open: Block | null = null
  private finishReason: string | null = null
  private matched: string | null = null
  private used: ChatUsage | undefined

  constructor(
    private readonly emit: Emit,
    private readonly id: string,
    model: string,
    private readonly stopSequences: readonly string[],
  ) {
    emit('message_start', {
      type: 'message_start',
      message: {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: usageOf(undefined),
      },
    })
  }

  reasoning(text: string): void {
    this.block({ kind: 'thinking' }, { type: 'thinking', thinking: '', signature: '' })
    this.delta({ type: 'thinking_delta', thinking: text })
  }

  text(text: string): void {
    this.block({ kind: 'text' }, { type: 'text', text: '' })
    this.delta({ type: 'text_delta', text })
  }

  toolCall(call: number, piece: { id?: string; name?: string; arguments?: string }): void {
    const current = this.open?.kind === 'tool_use' && this.open.call === call
    if (!current) {
      this.block(
        { kind: 'tool_use', call },
        { type: 'tool_use', id: piece.id ?? `toolu_${this.id}_${call}`, name: piece.name ?? '', input: {} },
      )
    }
    if (piece.arguments) this.delta({ type: 'input_json_delta', partial_json: piece.arguments })
  }

  finish(reason: string, matched: string | null): void {
    this.finishReason = reason
    this.matched = matched
  }

  usage(usage: ChatUsage): void {
    this.used = usage
  }

  done(): void {
    this.close()
    const { input_tokens, output_tokens } = usageOf(this.used)
    this.emit('message_delta', {
      type: 'message_delta',
      delta: stopOf(this.finishReason, this.matched, this.stopSequences),
      usage: { input_tokens, output_tokens },
    })
    this.emit('message_stop', { type: 'message_stop' })
  }

  fail(failure: StreamFailure): void {
    this.close()
    const status = failure.type === 'server_error' ? 500 : 400
    this.emit('error', {
      type: 'error',
      error: { type: anthropicErrorType(failure.code === 'upstream_timeout' ? 504 : status), message: failure.message },
    })
  }

  /** Opens a block of this kind unless it is the one open (closing the one before). */
  private block(kind: Block, start: Record<string, unknown>): void {
    if (this.open && this.open.kind === kind.kind && kind.kind !== 'tool_use') return
    this.close()
    this.index++
    this.open = kind
    this.emit('content_block_start', { type: 'content_block_start', index: this.index, content_block: start })
  }

  private delta(delta: Record<string, unknown>): void {
    this.emit('content_block_delta', { type: 'content_block_delta', index: this.index, delta })
  }

  private close(): void {
    if (this.open === null) return
    this.emit('content_block_stop', { type: 'content_block_stop', index: this.index })
    this.open = null
  }
}
