import OpenAI from 'openai'
import { beforeAll, describe, expect, it } from 'vitest'
import { ANSWER, cutStreamNext, lastUpstreamUsage, oneRequestPerMinute, THINKING, WEATHER_ROUND_TRIP } from '../helpers/adapted.js'
import type { FakeUpstream } from '../helpers/fake-upstream.js'
import { useGateway, type TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/**
 * OpenAI's Responses API in front of NVIDIA's chat completions, driven by the official openai
 * SDK's responses.create and responses.stream unchanged: text, reasoning, a function call round
 * trip, streaming and not, usage equal to the upstream's figures, failures as the SDK's errors.
 */

const MODEL = 'minimaxai/minimax-m2.1'
const weather = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  strict: false,
}
const clock = { type: 'function' as const, name: 'get_time', parameters: { type: 'object', properties: {} }, strict: false }

const ctx = useGateway({ env: { NVIDIA_RETRIES: '0' } }, 'coders')
let upstream: FakeUpstream
let gw: TestGateway
let client: OpenAI
let keyId: string

beforeAll(() => {
  ;({ upstream, gw, keyId } = ctx)
  client = new OpenAI({ apiKey: ctx.key, baseURL: `${gw.url}/v1`, maxRetries: 0 })
})

describe('openai responses.create', () => {
  it('answers with a reasoning item and a message, and the upstream usage', async () => {
    const response = await client.responses.create({
      model: MODEL,
      instructions: 'Be brief.',
      input: 'Hello',
      max_output_tokens: 200,
      safety_identifier: 'dev-7',
    })
    expect(response).toMatchObject({ object: 'response', status: 'completed', model: MODEL, error: null, incomplete_details: null })
    expect(response.id).toMatch(/^resp_/)
    expect(response.output_text).toBe(ANSWER)
    expect(response.output.map((o) => o.type)).toEqual(['reasoning', 'message'])
    expect(response.output[0]).toMatchObject({ type: 'reasoning', content: [{ type: 'reasoning_text', text: THINKING }] })
    const used = lastUpstreamUsage(upstream, false)
    expect(response.usage).toMatchObject({
      input_tokens: used.prompt_tokens,
      output_tokens: used.completion_tokens,
      total_tokens: used.total_tokens,
    })
    expect(upstream.requests.at(-1)!.body).toMatchObject({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
      max_tokens: 200,
      user: 'dev-7',
    })
    expect(upstream.requests.at(-1)!.body).not.toHaveProperty('input')
  })

  it('round-trips a function call: function_call out, function_call_output back in', async () => {
    const first = await client.responses.create({ model: MODEL, input: 'Weather in Zürich?', tools: [weather], tool_choice: 'auto' })
    const call = first.output.find((o) => o.type === 'function_call')!
    expect(call).toMatchObject({
      type: 'function_call',
      call_id: 'call_fake_1',
      name: 'get_weather',
      arguments: '{"city":"Zürich"}',
      status: 'completed',
    })
    expect(upstream.requests.at(-1)!.body).toMatchObject({
      tools: [
        { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: weather.parameters } },
      ],
      tool_choice: 'auto',
    })

    const second = await client.responses.create({
      model: MODEL,
      tools: [weather],
      input: [
        { role: 'user', content: 'Weather in Zürich?' },
        { type: 'function_call', call_id: 'call_fake_1', name: 'get_weather', arguments: '{"city":"Zürich"}' },
        { type: 'function_call_output', call_id: 'call_fake_1', output: '21 °C, sunny' },
      ],
    })
    expect(second.output_text).toBe(ANSWER)
    expect((upstream.requests.at(-1)!.body as { messages: unknown[] }).messages).toEqual(WEATHER_ROUND_TRIP)
  })

  it('takes message items with images and a developer role', async () => {
    await client.responses.create({
      model: MODEL,
      input: [
        { role: 'developer', content: 'Answer in French.' },
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'What is this?' },
            { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'auto' },
          ],
        },
      ],
      tool_choice: 'none',
    })
    expect(upstream.requests.at(-1)!.body).toMatchObject({
      messages: [
        { role: 'system', content: 'Answer in French.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
      ],
    })
  })

  it('counts usage against the key and end user like any chat completion', async () => {
    await client.responses.create({ model: MODEL, input: 'Count me', user: 'counted' })
    const used = lastUpstreamUsage(upstream, false)
    await waitFor(async () => {
      const res = await gw.admin('GET', '/admin/usage?team=coders&end_user=counted')
      return ((await res.json()) as { data: { requests: number }[] }).data[0]?.requests === 1
    }, 'the usage to settle')
    const rows = (await (await gw.admin('GET', '/admin/usage?team=coders&end_user=counted&group_by=key')).json()) as {
      data: { key: string; prompt_tokens: number; completion_tokens: number }[]
    }
    expect(rows.data).toEqual([
      expect.objectContaining({ key: keyId, prompt_tokens: used.prompt_tokens, completion_tokens: used.completion_tokens }),
    ])
  })

  it('refuses previous_response_id and store: true with a 400 naming them (it keeps no responses)', async () => {
    for (const [field, body] of [
      ['previous_response_id', { previous_response_id: 'resp_123' }],
      ['store', { store: true }],
    ] as const) {
      const err = await client.responses.create({ model: MODEL, input: 'Hi', ...body }).catch((e: unknown) => e)
      expect(err, field).toBeInstanceOf(OpenAI.BadRequestError)
      expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe(field)
      expect((err as Error).message).toContain('keeps no responses')
    }
  })
})

describe('openai responses.stream', () => {
  it('streams the reasoning and the text as their own items, then response.completed with the usage', async () => {
    const stream = client.responses.stream({ model: MODEL, input: 'Hello' })
    const types: string[] = []
    let text = ''
    stream.on('event', (event) => {
      if (types.at(-1) !== event.type) types.push(event.type)
    })
    stream.on('response.output_text.delta', (event) => (text += event.delta))
    const response = await stream.finalResponse()
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.reasoning_text.delta',
      'response.reasoning_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ])
    expect(text).toBe(ANSWER)
    expect(response.output_text).toBe(ANSWER)
    const used = lastUpstreamUsage(upstream, true)
    expect(response.usage).toMatchObject({ input_tokens: used.prompt_tokens, output_tokens: used.completion_tokens })
  })

  it('streams parallel function calls with their arguments in pieces', async () => {
    const stream = client.responses.stream({ model: MODEL, input: 'Weather and time in Zürich, in parallel.', tools: [weather, clock] })
    const deltas: string[] = []
    stream.on('response.function_call_arguments.delta', (event) => deltas.push(event.delta))
    const response = await stream.finalResponse()
    expect(response.output).toEqual([
      expect.objectContaining({ type: 'function_call', call_id: 'call_fake_1', name: 'get_weather', arguments: '{"city":"Zürich"}' }),
      expect.objectContaining({ type: 'function_call', call_id: 'call_fake_2', name: 'get_time', arguments: '{"city":"Zürich"}' }),
    ])
    expect(deltas).toHaveLength(4)
  })
})

describe('failures reach the SDK as its own error types', () => {
  it('an upstream error, and a stream cut mid-way', async () => {
    upstream.enqueue({
      kind: 'error',
      status: 400,
      body: JSON.stringify({ object: 'error', message: 'bad things', type: 'BadRequestError', code: 400 }),
    })
    expect(await client.responses.create({ model: MODEL, input: 'Hi' }).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.BadRequestError)

    cutStreamNext(upstream, MODEL, 'Half an ans')
    const stream = client.responses.stream({ model: MODEL, input: 'Hi' })
    let text = ''
    stream.on('response.output_text.delta', (event) => (text += event.delta))
    const cut = await stream.finalResponse().catch((e: unknown) => e)
    expect(cut).toBeInstanceOf(OpenAI.APIError)
    expect(text).toBe('Half an ans')
  })

  it('a quota refusal: RateLimitError, nothing sent upstream', async () => {
    const tight = new OpenAI({ apiKey: await oneRequestPerMinute(gw, 'tight'), baseURL: `${gw.url}/v1`, maxRetries: 0 })
    await tight.responses.create({ model: MODEL, input: 'Hi' })
    const before = upstream.requests.length
    expect(await tight.responses.create({ model: MODEL, input: 'Hi' }).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.RateLimitError)
    expect(
      await tight.responses
        .stream({ model: MODEL, input: 'Hi' })
        .finalResponse()
        .catch((e: unknown) => e),
    ).toBeInstanceOf(OpenAI.RateLimitError)
    expect(upstream.requests.length).toBe(before)
  })
})
