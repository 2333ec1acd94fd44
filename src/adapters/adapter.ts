import type { Transform } from 'node:stream'

/**
 * A protocol the gateway speaks in front of chat completions (Anthropic's Messages): the client's
 * body becomes a chat completion body before the pipeline's first step, and the upstream's answer,
 * stream or error goes back in the protocol's own shape. Every other step (limits, usage, spend,
 * audit, retries, fallbacks) is the chat route's, unchanged.
 */
export interface Adapter {
  /** The client's body as a chat completion body; a GatewayError (400) naming the field if it cannot be one. */
  toChat(body: unknown): Record<string, unknown>
  /** A whole chat completion answer in the protocol's shape. */
  answer(chat: Buffer, call: AdaptedCall): Buffer
  /** Turns the upstream's chat stream (after the usage tap) into the protocol's events. */
  stream(call: AdaptedCall): Transform
  /** An error answer (OpenAI's envelope, as the gateway writes them all) in the protocol's envelope. */
  error(status: number, openai: { error: { message: string; type: string; code: string | null; param: string | null } }): unknown
}

/** What an answer's translation needs of its request. */
export interface AdaptedCall {
  /** The gateway's request id: the answer's id is made from it. */
  requestId: string
  /** The client's body as it came (before translation). */
  original: Record<string, unknown>
}
