import { z } from 'zod'
import { chatContent, parseRequest, type ChatPart } from './adapter.js'

/**
 * OpenAI's Responses API request (POST /v1/responses, as `client.responses.create` and coding
 * agents such as Codex CLI send it) as a chat completion request for NVIDIA: instructions, input
 * messages of text and images, function tools, function calls and their outputs, tool_choice,
 * max_output_tokens, sampling, the end user. The gateway keeps no responses: `previous_response_id`
 * and `store: true` are refused with a 400 naming them. Reasoning items a client sends back are
 * dropped (the upstream reasons afresh); `reasoning` settings are not passed on.
 * Source: https://platform.openai.com/docs/api-reference/responses/create
 */

const inputText = z.looseObject({ type: z.enum(['input_text', 'output_text']), text: z.string() })
const inputImage = z.looseObject({
  type: z.literal('input_image'),
  image_url: z.string({ error: 'is required (file ids are not supported: the gateway keeps no files)' }),
})
const part = z.discriminatedUnion('type', [inputText, inputImage], {
  error: 'must be a content part of type input_text, output_text or input_image',
})
const message = z.looseObject({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer'], { error: "must be 'user', 'assistant', 'system' or 'developer'" }),
  content: z.union([z.string(), z.array(part)], { error: 'must be a string or an array of content parts' }),
})
const functionCall = z.looseObject({
  type: z.literal('function_call'),
  call_id: z.string().min(1),
  name: z.string().min(1),
  arguments: z.string(),
})
const functionOutput = z.looseObject({
  type: z.literal('function_call_output'),
  call_id: z.string().min(1),
  output: z.union([z.string(), z.array(inputText)]),
})
const reasoning = z.looseObject({ type: z.literal('reasoning') })
const item = z.union([message, functionCall, functionOutput, reasoning], {
  error: 'must be a message, function_call, function_call_output or reasoning item',
})

const functionTool = z.looseObject({
  type: z.literal('function', { error: "must be a function tool (type 'function'): the gateway runs no built-in tools" }),
  name: z.string().min(1),
  description: z.string().nullable().optional(),
  parameters: z.record(z.string(), z.unknown()).nullable().optional(),
})

export const responsesBody = z.looseObject({
  model: z.string({ error: 'is required' }).min(1, { error: 'is required' }),
  input: z.union([z.string(), z.array(item)], { error: 'is required: a string or an array of input items' }),
  instructions: z.string().nullable().optional(),
  max_output_tokens: z.int({ error: 'must be a whole number of tokens' }).min(1, { error: 'must be at least 1' }).nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().min(0).max(1).nullable().optional(),
  tools: z.array(functionTool).optional(),
  tool_choice: z
    .union([z.enum(['auto', 'none', 'required']), z.looseObject({ type: z.literal('function'), name: z.string().min(1) })], {
      error: "must be 'auto', 'none', 'required' or {type: 'function', name}",
    })
    .optional(),
  parallel_tool_calls: z.boolean().nullable().optional(),
  stream: z.boolean().nullable().optional(),
  previous_response_id: z
    .null({ error: 'is not supported: the gateway keeps no responses; send the whole conversation in input' })
    .optional(),
  store: z.literal(false, { error: 'must be false or left out: the gateway keeps no responses' }).nullable().optional(),
  safety_identifier: z.string().max(256).optional(),
  user: z.string().max(256).optional(),
})
export type ResponsesBody = z.infer<typeof responsesBody>

export const parseResponsesBody = (body: unknown): ResponsesBody => parseRequest(responsesBody, body)

type Item = z.infer<typeof item>
type ChatMessage = Record<string, unknown>

function messageContent(content: z.infer<typeof message>['content']): string | ChatPart[] {
  if (typeof content === 'string') return content
  const parts = content.map((p): ChatPart =>
    p.type === 'input_image' ? { type: 'image_url', image_url: { url: p.image_url } } : { type: 'text', text: p.text },
  )
  return chatContent(parts, '')
}

/** Input items as chat messages: function calls join the assistant turn they belong to. */
function messagesOf(items: Item[]): ChatMessage[] {
  const out: ChatMessage[] = []
  for (const it of items) {
    if (it.type === 'reasoning') continue
    if (it.type === 'function_call') {
      const call = { id: it.call_id, type: 'function', function: { name: it.name, arguments: it.arguments } }
      const last = out.at(-1)
      if (last?.role === 'assistant') last.tool_calls = [...((last.tool_calls as unknown[]) ?? []), call]
      else out.push({ role: 'assistant', content: null, tool_calls: [call] })
    } else if (it.type === 'function_call_output') {
      out.push({
        role: 'tool',
        tool_call_id: it.call_id,
        content: typeof it.output === 'string' ? it.output : it.output.map((p) => p.text).join(''),
      })
    } else {
      out.push({ role: it.role === 'developer' ? 'system' : it.role, content: messageContent(it.content) })
    }
  }
  return out
}

/** The chat completion body for a Responses request (`stream` asks the upstream for usage too). */
export function responsesToChat(b: ResponsesBody): Record<string, unknown> {
  const messages: ChatMessage[] = []
  if (b.instructions) messages.push({ role: 'system', content: b.instructions })
  messages.push(...(typeof b.input === 'string' ? [{ role: 'user', content: b.input }] : messagesOf(b.input)))
  const choice = b.tool_choice
  const user = b.safety_identifier ?? b.user
  return {
    model: b.model,
    messages,
    ...(b.max_output_tokens != null ? { max_tokens: b.max_output_tokens } : {}),
    ...(b.temperature != null ? { temperature: b.temperature } : {}),
    ...(b.top_p != null ? { top_p: b.top_p } : {}),
    ...(b.tools?.length
      ? {
          tools: b.tools.map((t) => ({
            type: 'function',
            function: {
              name: t.name,
              ...(t.description ? { description: t.description } : {}),
              parameters: t.parameters ?? { type: 'object' },
            },
          })),
        }
      : {}),
    ...(choice !== undefined
      ? { tool_choice: typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } } }
      : {}),
    ...(user ? { user } : {}),
    ...(b.stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  }
}
