import type { Adapter } from '../adapters/adapter.js'
import { messagesAdapter } from '../adapters/messages.js'
import { responsesAdapter } from '../adapters/responses.js'

/** The proxied endpoints: where each is served and sent, what carries its input, what it reserves by. */

export interface Endpoint {
  /** Its name in metrics, logs and the audit trail. */
  name: 'chat' | 'completions' | 'embeddings' | 'messages' | 'responses'
  /** What the upstream is asked: a chat completion, a legacy completion, embeddings. */
  kind: 'chat' | 'completions' | 'embeddings'
  path: string
  upstreamPath: string
  /** The field that carries the input, with a check of its type. */
  input: { field: string; check: (v: unknown) => boolean; expected: string }
  /** Whether model defaults (sampling parameters) apply. */
  defaults: boolean
  /** The counts a reservation is made of, checked when present. */
  counts: readonly Count[]
  /** Another protocol in front of chat completions: its body is translated before the first step. */
  adapter?: Adapter
}

/** A whole-number field and its bounds, as OpenAI sets them. */
export interface Count {
  field: string
  min: number
  max: number
}

/**
 * Checked here because the gateway reserves tokens by them before the upstream sees them: a
 * fraction or a string would be reserved as the default, and 1e300 as Infinity. A legacy
 * completion's max_tokens may be 0 (with `echo`, it scores a prompt without generating).
 */
const INT32 = 2_147_483_647
const COUNTS: readonly Count[] = [
  { field: 'max_tokens', min: 1, max: INT32 },
  { field: 'max_completion_tokens', min: 1, max: INT32 },
  { field: 'n', min: 1, max: 128 },
]

const CHAT = {
  kind: 'chat',
  upstreamPath: '/chat/completions',
  input: { field: 'messages', check: (v: unknown) => Array.isArray(v) && v.length > 0, expected: 'a non-empty array of messages' },
  defaults: true,
  counts: COUNTS,
} as const

export const ENDPOINTS: readonly Endpoint[] = [
  { name: 'chat', path: '/v1/chat/completions', ...CHAT },
  // Anthropic's Messages API (adapters/messages.ts), answered by chat completions.
  { name: 'messages', path: '/v1/messages', ...CHAT, adapter: messagesAdapter },
  // OpenAI's Responses API (adapters/responses.ts), answered by chat completions.
  { name: 'responses', path: '/v1/responses', ...CHAT, adapter: responsesAdapter },
  {
    name: 'completions',
    kind: 'completions',
    path: '/v1/completions',
    upstreamPath: '/completions',
    input: {
      field: 'prompt',
      check: (v) => typeof v === 'string' || (Array.isArray(v) && v.length > 0),
      expected: 'a string or a non-empty array',
    },
    defaults: true,
    counts: COUNTS.map((c) => (c.field === 'max_tokens' ? { ...c, min: 0 } : c)),
  },
  {
    name: 'embeddings',
    kind: 'embeddings',
    path: '/v1/embeddings',
    upstreamPath: '/embeddings',
    input: {
      field: 'input',
      check: (v) => (typeof v === 'string' && v.length > 0) || (Array.isArray(v) && v.length > 0),
      expected: 'a non-empty string or array',
    },
    defaults: false,
    counts: [],
  },
]
