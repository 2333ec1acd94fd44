import type { Transform } from 'node:stream'
import type { z } from 'zod'
import { invalidRequest } from '../errors.js'
import { describeIssues, firstIssuePath } from '../validation.js'

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
  /**
   * An error answer (OpenAI's envelope, as the gateway writes them all) in the protocol's envelope;
   * left out by a protocol whose errors are OpenAI's envelope already.
   */
  error?(status: number, openai: { error: { message: string; type: string; code: string | null; param: string | null } }): unknown
}

/** What an answer's translation needs of its request. */
export interface AdaptedCall {
  /** The gateway's request id: the answer's id is made from it. */
  requestId: string
  /** The client's body as it came (before translation). */
  original: Record<string, unknown>
}

/** A protocol's request body checked against its schema: a 400 naming the first bad field, in the gateway's words. */
export function parseRequest<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_json')
  }
  const parsed = schema.safeParse(body)
  if (!parsed.success) {
    throw invalidRequest(describeIssues(parsed.error.issues).join('; '), firstIssuePath(parsed.error.issues), 'invalid_value')
  }
  return parsed.data
}

/** A chat message's content part. */
export type ChatPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } }

/** Parts as chat content: one string when they are all text (joined by `separator`), else the parts. */
export function chatContent(parts: ChatPart[], separator: string): string | ChatPart[] {
  return parts.every((p) => p.type === 'text') ? parts.map((p) => (p as { text: string }).text).join(separator) : parts
}
