import { describe, expect, it } from 'vitest'
import type { AdaptedCall } from '../../src/adapters/adapter.js'
import { messagesAdapter } from '../../src/adapters/messages.js'
import { responsesAdapter } from '../../src/adapters/responses.js'

/**
 * The two protocol adapters on upstream answers the integration tests' fake upstream does not
 * write: reasoning in `reasoning_content`, an answer cut by its length, a stop sequence named by
 * vLLM, tool arguments that are not JSON, a stream that ends without [DONE].
 */

const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish, ...extra }] })}\n\n`
const usage = `data: ${JSON.stringify({ id: 'c', choices: [], usage: { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 } })}\n\n`

/** The events a stream of these upstream chunks becomes, fed in 3-byte slices. */
async function translate(
  adapter: typeof messagesAdapter,
  call: AdaptedCall,
  upstream: string,
): Promise<{ event: string; data: Record<string, unknown> }[]> {
  const stream = adapter.stream(call)
  const out: Buffer[] = []
  stream.on('data', (b: Buffer) => out.push(b))
  const bytes = Buffer.from(upstream)
  for (let i = 0; i < bytes.length; i += 3) stream.write(bytes.subarray(i, i + 3))
  stream.end()
  await new Promise((resolve) => stream.on('end', resolve))
  return Buffer.concat(out)
    .toString('utf8')
    .split('\n\n')
    .filter(Boolean)
    .map((e) => {
      const [eventLine, dataLine] = e.split('\n')
      return { event: eventLine!.slice('event: '.length), data: JSON.parse(dataLine!.slice('data: '.length)) as Record<string, unknown> }
    })
}

const messagesCall: AdaptedCall = { requestId: 'req-1', original: { model: 'm', max_tokens: 10, stop_sequences: ['END'] } }
const responsesCall: AdaptedCall = { requestId: 'req-2', original: { model: 'm', input: 'hi' } }

describe('streams', () => {
  const reasoned = [
    chunk({ role: 'assistant', content: '' }),
    chunk({ reasoning_content: 'Think ' }),
    chunk({ reasoning_content: 'hard.' }),
    chunk({ content: 'Answer' }),
    chunk({ content: '' }, 'length'),
    usage,
    'data: [DONE]\n\n',
  ].join('')

  it('Messages: reasoning_content becomes a thinking block; a cut by length is max_tokens', async () => {
    const events = await translate(messagesAdapter, messagesCall, reasoned)
    const deltas = events.filter((e) => e.event === 'content_block_delta').map((e) => e.data.delta)
    expect(deltas).toEqual([
      { type: 'thinking_delta', thinking: 'Think ' },
      { type: 'thinking_delta', thinking: 'hard.' },
      { type: 'text_delta', text: 'Answer' },
    ])
    expect(events.find((e) => e.event === 'message_delta')!.data).toEqual({
      type: 'message_delta',
      delta: { stop_reason: 'max_tokens', stop_sequence: null },
      usage: { input_tokens: 7, output_tokens: 5 },
    })
    expect(events.at(-1)!.event).toBe('message_stop')
  })

  it('Responses: reasoning_content becomes a reasoning item; a cut by length is incomplete', async () => {
    const events = await translate(responsesAdapter, responsesCall, reasoned)
    expect(events.map((e) => e.data.sequence_number)).toEqual(events.map((_, i) => i))
    const last = events.at(-1)!
    expect(last.event).toBe('response.incomplete')
    expect(last.data.response).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      output: [
        { type: 'reasoning', content: [{ type: 'reasoning_text', text: 'Think hard.' }] },
        { type: 'message', status: 'completed', content: [{ type: 'output_text', text: 'Answer', annotations: [] }] },
      ],
      usage: { input_tokens: 7, output_tokens: 5, total_tokens: 12 },
    })
  })

  it('names the stop sequence that ended the answer, when the upstream says which', async () => {
    const events = await translate(
      messagesAdapter,
      messagesCall,
      [chunk({ content: 'Done' }), chunk({}, 'stop', { stop_reason: 'END' }), usage, 'data: [DONE]\n\n'].join(''),
    )
    expect(events.find((e) => e.event === 'message_delta')!.data.delta).toEqual({ stop_reason: 'stop_sequence', stop_sequence: 'END' })
  })

  it('ends a stream that stops without [DONE] with the protocol’s error event', async () => {
    const cut = chunk({ content: 'Half' })
    const messages = await translate(messagesAdapter, messagesCall, cut)
    expect(messages.at(-1)).toEqual({
      event: 'error',
      data: { type: 'error', error: { type: 'api_error', message: 'The upstream stream ended early.' } },
    })
    const responses = await translate(responsesAdapter, responsesCall, cut)
    expect(responses.at(-1)!.data).toMatchObject({
      type: 'error',
      code: 'upstream_unreachable',
      error: { code: 'upstream_unreachable', type: 'server_error', message: 'The upstream stream ended early.' },
    })
  })

  it('passes the gateway’s own error event on in the protocol’s shape', async () => {
    const gatewayCut = `data: ${JSON.stringify({ error: { message: 'The stream was too large.', type: 'server_error', param: null, code: 'stream_too_large' } })}\n\n`
    const events = await translate(messagesAdapter, messagesCall, chunk({ content: 'Some' }) + gatewayCut)
    expect(events.map((e) => e.event)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'error',
    ])
    expect(events.at(-1)!.data.error).toEqual({ type: 'api_error', message: 'The stream was too large.' })
  })
})

describe('whole answers', () => {
  const answer = (message: Record<string, unknown>, finish = 'tool_calls') =>
    Buffer.from(
      JSON.stringify({
        choices: [{ index: 0, message, finish_reason: finish }],
        usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      }),
    )

  it('keeps tool arguments that are not JSON, under _raw (Messages) or as written (Responses)', () => {
    const calls = {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{"a": 1' } }],
    }
    const message = JSON.parse(messagesAdapter.answer(answer(calls), messagesCall).toString()) as {
      content: unknown[]
      stop_reason: string
    }
    expect(message.content).toEqual([{ type: 'tool_use', id: 't1', name: 'f', input: { _raw: '{"a": 1' } }])
    expect(message.stop_reason).toBe('tool_use')
    const response = JSON.parse(responsesAdapter.answer(answer(calls), responsesCall).toString()) as { output: unknown[] }
    expect(response.output).toEqual([expect.objectContaining({ type: 'function_call', call_id: 't1', name: 'f', arguments: '{"a": 1' })])
  })
})
