import { z } from 'zod'
import { chatContent, parseRequest, type ChatPart } from './adapter.js'

/**
 * Anthropic's Messages API request (POST /v1/messages, as the Anthropic SDKs and Claude Code send
 * it) as a chat completion request for NVIDIA: system prompt, turns of text and images, tool
 * definitions, tool calls and their results, tool_choice, max_tokens, sampling, stop sequences,
 * the end user. Thinking blocks a client sends back are dropped (the upstream reasons afresh);
 * `top_k` and `thinking` settings are not passed on: NVIDIA's chat schema takes neither.
 * Source: https://docs.anthropic.com/en/api/messages
 */

const text = z.looseObject({ type: z.literal('text'), text: z.string() })
const image = z.looseObject({
  type: z.literal('image'),
  source: z.union([
    z.looseObject({ type: z.literal('base64'), media_type: z.string(), data: z.string() }),
    z.looseObject({ type: z.literal('url'), url: z.string() }),
  ]),
})
const toolUse = z.looseObject({ type: z.literal('tool_use'), id: z.string().min(1), name: z.string().min(1), input: z.unknown() })
const toolResult = z.looseObject({
  type: z.literal('tool_result'),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(z.union([text, image]))]).optional(),
  is_error: z.boolean().optional(),
})
const thinking = z.looseObject({ type: z.enum(['thinking', 'redacted_thinking']) })
const block = z.discriminatedUnion('type', [text, image, toolUse, toolResult, thinking], {
  error: 'must be a content block of type text, image, tool_use, tool_result or thinking',
})

const message = z.looseObject({
  role: z.enum(['user', 'assistant'], { error: "must be 'user' or 'assistant'" }),
  content: z.union([z.string(), z.array(block)], { error: 'must be a string or an array of content blocks' }),
})

export const messagesBody = z.looseObject({
  model: z.string({ error: 'is required' }).min(1, { error: 'is required' }),
  max_tokens: z.int({ error: 'is required: a whole number of tokens' }).min(1, { error: 'must be at least 1' }),
  messages: z.array(message, { error: 'must be an array of messages' }).min(1, { error: 'must hold at least one message' }),
  system: z.union([z.string(), z.array(text)], { error: 'must be a string or an array of text blocks' }).optional(),
  stop_sequences: z.array(z.string()).max(16).optional(),
  stream: z.boolean().optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.int().min(0).optional(),
  tools: z
    .array(z.looseObject({ name: z.string().min(1), description: z.string().optional(), input_schema: z.record(z.string(), z.unknown()) }))
    .optional(),
  tool_choice: z
    .looseObject({
      type: z.enum(['auto', 'any', 'tool', 'none']),
      name: z.string().min(1).optional(),
      disable_parallel_tool_use: z.boolean().optional(),
    })
    .refine((c) => c.type !== 'tool' || c.name !== undefined, { error: "needs a 'name' with type 'tool'" })
    .optional(),
  metadata: z.looseObject({ user_id: z.string().max(256).nullable().optional() }).optional(),
})
export type MessagesBody = z.infer<typeof messagesBody>
/** POST /v1/messages/count_tokens takes the same body without max_tokens. */
export const countTokensBody = messagesBody.extend({
  max_tokens: messagesBody.shape.max_tokens.optional(),
}) as unknown as z.ZodType<MessagesBody>

/** A 400 naming the field, in the words the other routes use (the Messages route writes it in Anthropic's shape). */
export const parseMessagesBody = (body: unknown, schema: z.ZodType<MessagesBody> = messagesBody): MessagesBody => parseRequest(schema, body)

type Block = z.infer<typeof block>
type ChatMessage = Record<string, unknown>

const imagePart = (b: z.infer<typeof image>): ChatPart => ({
  type: 'image_url',
  image_url: { url: b.source.type === 'base64' ? `data:${b.source.media_type};base64,${b.source.data}` : b.source.url },
})

function toolResultMessage(b: z.infer<typeof toolResult>): ChatMessage {
  const body =
    typeof b.content === 'string'
      ? b.content
      : (b.content ?? [])
          .filter((c) => c.type === 'text')
          .map((c) => (c as { text: string }).text)
          .join('\n\n')
  return { role: 'tool', tool_call_id: b.tool_use_id, content: b.is_error ? `Error: ${body}` : body }
}

/** One Anthropic turn as chat messages: a user turn's tool results come first, as tool messages. */
function turn(role: 'user' | 'assistant', blocks: Block[]): ChatMessage[] {
  if (role === 'assistant') {
    const texts = blocks.filter((b) => b.type === 'text').map((b) => b.text)
    const calls = blocks
      .filter((b) => b.type === 'tool_use')
      .map((b) => ({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } }))
    return [{ role, content: texts.length > 0 ? texts.join('') : null, ...(calls.length > 0 ? { tool_calls: calls } : {}) }]
  }
  const out: ChatMessage[] = blocks.filter((b) => b.type === 'tool_result').map(toolResultMessage)
  const parts: ChatPart[] = []
  for (const b of blocks) {
    if (b.type === 'text') parts.push({ type: 'text', text: b.text })
    else if (b.type === 'image') parts.push(imagePart(b))
  }
  if (parts.length > 0) out.push({ role, content: chatContent(parts, '\n\n') })
  return out
}

/** The chat completion body for an Anthropic Messages request (`stream` asks the upstream for usage too). */
export function messagesToChat(b: MessagesBody): Record<string, unknown> {
  const messages: ChatMessage[] = []
  const system = typeof b.system === 'string' ? b.system : b.system?.map((t) => t.text).join('\n\n')
  if (system) messages.push({ role: 'system', content: system })
  for (const m of b.messages)
    messages.push(...turn(m.role, typeof m.content === 'string' ? [{ type: 'text', text: m.content }] : m.content))
  const choice = b.tool_choice
  return {
    model: b.model,
    messages,
    max_tokens: b.max_tokens,
    ...(b.temperature !== undefined ? { temperature: b.temperature } : {}),
    ...(b.top_p !== undefined ? { top_p: b.top_p } : {}),
    ...(b.stop_sequences?.length ? { stop: b.stop_sequences } : {}),
    ...(b.tools?.length
      ? {
          tools: b.tools.map((t) => ({
            type: 'function',
            function: { name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.input_schema },
          })),
        }
      : {}),
    ...(choice
      ? {
          tool_choice:
            choice.type === 'tool'
              ? { type: 'function', function: { name: choice.name } }
              : { auto: 'auto', any: 'required', none: 'none' }[choice.type],
        }
      : {}),
    ...(b.metadata?.user_id ? { user: b.metadata.user_id } : {}),
    ...(b.stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  }
}
