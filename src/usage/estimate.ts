import { hash } from 'node:crypto'
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { LRUCache } from 'lru-cache'

/**
 * Token estimates, for reservations before the call and for usage the upstream never reported.
 * MiniMax and most NVIDIA-hosted models use their own tokenizers, which no JavaScript library
 * ships; o200k_base (gpt-tokenizer) is a close, maintained stand-in. Reservations are settled to
 * the upstream's real usage whenever it reports one.
 */

/** Tokens a chat message costs beyond its text, as OpenAI counts them. */
const PER_MESSAGE = 4
const PER_REPLY = 3

function textOf(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content.map((part) => (typeof part === 'object' && part !== null && typeof (part as { text?: unknown }).text === 'string' ? (part as { text: string }).text : '')).join('')
  }
  return ''
}

export function countText(text: string): number {
  return text.length === 0 ? 0 : countTokens(text)
}

/**
 * Token counts of prompt texts, by each text's SHA-256 (no prompt is kept). Chat clients send the
 * whole conversation again every turn, and the same system prompt with every request, so most of
 * a prompt has been counted before. Counting is the costliest thing the gateway does with a long
 * prompt, on the event loop: about 0.7 ms per 16 KB, where hashing it takes 14 µs
 * (bench/prompt-tokens.ts).
 */
const promptCounts = new LRUCache<string, number>({ max: 20_000 })

export function countPromptText(text: string): number {
  if (text.length === 0) return 0
  const key = hash('sha256', text, 'base64')
  let n = promptCounts.get(key)
  if (n === undefined) promptCounts.set(key, (n = countText(text)))
  return n
}

/** The prompt's tokens, by endpoint. */
export function estimatePromptTokens(endpoint: string, body: Record<string, unknown>): number {
  if (endpoint === 'chat') {
    let total = PER_REPLY
    for (const message of body.messages as unknown[]) {
      const m = (message ?? {}) as Record<string, unknown>
      total += PER_MESSAGE + countPromptText(textOf(m.content))
      if (typeof m.name === 'string') total += countPromptText(m.name)
      if (m.tool_calls !== undefined) total += countPromptText(JSON.stringify(m.tool_calls))
    }
    if (body.tools !== undefined) total += countPromptText(JSON.stringify(body.tools))
    return total
  }
  const input = endpoint === 'completions' ? body.prompt : body.input
  const items = Array.isArray(input) ? input : [input]
  let total = 0
  for (const item of items) {
    if (typeof item === 'string') total += countPromptText(item)
    else if (typeof item === 'number') total += 1 // a token id
    else if (Array.isArray(item)) total += item.length // a list of token ids
  }
  return total
}

/**
 * What to reserve at admission: the prompt plus the most the answer may use, as sent upstream
 * (after defaults), for each of `n` choices.
 */
export function reservationTokens(endpoint: string, upstreamBody: Record<string, unknown>, promptTokens: number, fallbackCompletion: number): number {
  if (endpoint === 'embeddings') return promptTokens
  const max = upstreamBody.max_tokens ?? upstreamBody.max_completion_tokens
  const completion = typeof max === 'number' && max >= 0 ? max : fallbackCompletion
  const n = typeof upstreamBody.n === 'number' && upstreamBody.n > 1 ? upstreamBody.n : 1
  return promptTokens + completion * n
}
