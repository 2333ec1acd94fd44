import type { Adapter, AdaptedCall } from './adapter.js'
import { readChatAnswer } from './chat-answer.js'
import { ChatStreamTranslator } from './chat-stream.js'
import { chatToResponse, ResponsesStreamWriter, type ResponseEcho } from './responses-answer.js'
import { parseResponsesBody, responsesToChat } from './responses-request.js'

/** What the response repeats: its id (`resp_` and the gateway's request id), model, time, request. */
const echoOf = (call: AdaptedCall): ResponseEcho => ({
  id: `resp_${call.requestId.replace(/[^A-Za-z0-9]/g, '')}`,
  model: String(call.original.model),
  createdAt: Math.floor(Date.now() / 1000),
  original: call.original,
})

/** OpenAI's Responses API (POST /v1/responses) in front of chat completions. Its errors are OpenAI's envelope already. */
export const responsesAdapter: Adapter = {
  toChat: (body) => responsesToChat(parseResponsesBody(body)),
  answer: (chat, call) => Buffer.from(JSON.stringify(chatToResponse(readChatAnswer(chat), echoOf(call)))),
  stream: (call) => new ChatStreamTranslator((emit) => new ResponsesStreamWriter(emit, echoOf(call))),
}
