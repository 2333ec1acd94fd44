import type { ChatUsage } from './chat-stream.js'
import { splitThinking } from './think.js'

/** What a whole chat completion answered, as the protocol adapters read it. */
export interface ChatAnswer {
  /** The upstream's reasoning_content, then what the content held in `<think>` blocks. */
  reasoning: string
  text: string
  calls: { id: string | null; name: string; arguments: string }[]
  finish: string | null
  /** The stop sequence that ended the answer, when the upstream names it (vLLM's `stop_reason`). */
  matched: string | null
  usage: ChatUsage | undefined
}

interface ChatCompletion {
  choices?: {
    message?: {
      content?: string | null
      reasoning_content?: string | null
      reasoning?: string | null
      tool_calls?: { id?: string; function?: { name?: string; arguments?: string } }[]
    }
    finish_reason?: string | null
    stop_reason?: unknown
  }[]
  usage?: ChatUsage
}

/** Reads a chat completion's JSON (its first choice). */
export function readChatAnswer(json: Buffer): ChatAnswer {
  const answer = JSON.parse(json.toString('utf8')) as ChatCompletion
  const choice = answer.choices?.[0]
  const m = choice?.message
  const split = splitThinking(m?.content ?? '')
  return {
    reasoning: (m?.reasoning_content ?? m?.reasoning ?? '') + split.reasoning,
    text: split.text,
    calls: (m?.tool_calls ?? []).map((c) => ({ id: c.id ?? null, name: c.function?.name ?? '', arguments: c.function?.arguments ?? '' })),
    finish: choice?.finish_reason ?? null,
    matched: typeof choice?.stop_reason === 'string' ? choice.stop_reason : null,
    usage: answer.usage,
  }
}
