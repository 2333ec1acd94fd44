import { STREAM_TEXT, type FakeUpstream } from './fake-upstream.js'
import type { TestGateway } from './gateway.js'

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

/** The next answer streams one chunk of `text`, then its connection breaks: a stream cut mid-way. */
export function cutStreamNext(upstream: FakeUpstream, model: string, text: string): void {
  upstream.enqueue({
    kind: 'custom',
    answer: (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      const chunk = {
        id: 'c',
        object: 'chat.completion.chunk',
        created: 1,
        model,
        choices: [{ index: 0, delta: { content: text }, finish_reason: null }],
      }
      res.write(`data: ${JSON.stringify(chunk)}\n\n`)
      setTimeout(() => res.destroy(), 50)
    },
  })
}

/** The key of a new team `id` allowed one request per minute. */
export async function oneRequestPerMinute(gw: TestGateway, id: string): Promise<string> {
  const created = await gw.admin('POST', '/admin/teams', { id, limits: { requests_per_minute: 1 } })
  if (created.status !== 201) throw new Error(`team create: ${created.status} ${await created.text()}`)
  return (await gw.createKey(id)).key
}
