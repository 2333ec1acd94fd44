import { STREAM_TEXT, type FakeUpstream } from './fake-upstream.js'

/** What the tests of the protocol adapters (Messages, Responses) share about the fake upstream's answers. */

/** The reasoning the fake upstream writes inline (`<think>…</think>`), and the answer after it. */
export const THINKING = 'The user greets me.'
export const ANSWER = STREAM_TEXT.slice(STREAM_TEXT.indexOf('</think>') + '</think>'.length)

export interface ChatUsage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

/** The usage the upstream reported in its last answer: a JSON body's, or (`streamed`) its last stream's usage event. */
export function lastUpstreamUsage(upstream: FakeUpstream, streamed: boolean): ChatUsage {
  if (!streamed) return (JSON.parse(upstream.bodies.at(-1)!) as { usage: ChatUsage }).usage
  return upstream.streams
    .at(-1)!
    .toString('utf8')
    .split('\n\n')
    .filter((e) => e.includes('"usage":{'))
    .map((e) => (JSON.parse(e.slice('data: '.length)) as { usage: ChatUsage }).usage)
    .at(-1)!
}

/** The chat messages a weather tool round trip sends upstream: the question, the call, its result. */
export const WEATHER_ROUND_TRIP = [
  { role: 'user', content: 'Weather in Zürich?' },
  {
    role: 'assistant',
    content: null,
    tool_calls: [{ id: 'call_fake_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Zürich"}' } }],
  },
  { role: 'tool', tool_call_id: 'call_fake_1', content: '21 °C, sunny' },
]
