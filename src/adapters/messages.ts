import type { Adapter, AdaptedCall } from './adapter.js'
import { readChatAnswer } from './chat-answer.js'
import { ChatStreamTranslator } from './chat-stream.js'
import { anthropicError, chatToMessage, MessagesStreamWriter } from './messages-answer.js'
import { messagesToChat, parseMessagesBody } from './messages-request.js'

/** The answer's id: `msg_` and the gateway's request id, so a message can be found in the logs. */
const messageId = (call: AdaptedCall) => `msg_${call.requestId.replace(/[^A-Za-z0-9]/g, '')}`
const modelOf = (call: AdaptedCall) => String(call.original.model)
const stopsOf = (call: AdaptedCall) => (Array.isArray(call.original.stop_sequences) ? (call.original.stop_sequences as string[]) : [])

/** Anthropic's Messages API (POST /v1/messages) in front of chat completions. */
export const messagesAdapter: Adapter = {
  toChat: (body) => messagesToChat(parseMessagesBody(body)),
  answer: (chat, call) => Buffer.from(JSON.stringify(chatToMessage(readChatAnswer(chat), messageId(call), modelOf(call), stopsOf(call)))),
  stream: (call) => new ChatStreamTranslator((emit) => new MessagesStreamWriter(emit, messageId(call), modelOf(call), stopsOf(call))),
  error: (status, openai) => anthropicError(status, openai.error.message),
}
