import Anthropic from '@anthropic-ai/sdk'
import { beforeAll, describe, expect, it } from 'vitest'
import { ANSWER, cutStreamNext, lastUpstreamUsage, oneRequestPerMinute, THINKING, WEATHER_ROUND_TRIP } from '../helpers/adapted.js'
import type { FakeUpstream } from '../helpers/fake-upstream.js'
import { useGateway, type TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Anthropic's Messages API in front of NVIDIA's chat completions, driven by the official
 * @anthropic-ai/sdk unchanged (x-api-key, anthropic-version): text, reasoning, tool use round
 * trips, streaming and not, usage equal to the upstream's figures, and failures raised as the
 * SDK's own error types.
 */

const MODEL = 'minimaxai/minimax-m2.1'
const weather = {
  name: 'get_weather',
  description: 'The weather in a city',
  input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] },
}
const clock = { name: 'get_time', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } } } }

const ctx = useGateway({ env: { NVIDIA_RETRIES: '0' } }, 'agents')
let upstream: FakeUpstream
let gw: TestGateway
let client: Anthropic
let keyId: string

beforeAll(() => {
  ;({ upstream, gw, keyId } = ctx)
  client = new Anthropic({ apiKey: ctx.key, baseURL: gw.url, maxRetries: 0 })
})

describe('@anthropic-ai/sdk messages.create', () => {
  it('answers text with its reasoning as a thinking block, and the upstream usage', async () => {
    const message = await client.messages.create({
      model: MODEL,
      max_tokens: 256,
      system: 'Be brief.',
      messages: [{ role: 'user', content: 'Hello' }],
      stop_sequences: ['\n\nHuman:'],
      metadata: { user_id: 'user-42' },
    })
    expect(message).toMatchObject({ type: 'message', role: 'assistant', model: MODEL, stop_reason: 'end_turn', stop_sequence: null })
    expect(message.id).toMatch(/^msg_/)
    expect(message.content).toEqual([
      { type: 'thinking', thinking: THINKING, signature: '' },
      { type: 'text', text: ANSWER },
    ])
    const used = lastUpstreamUsage(upstream, false)
    expect(message.usage).toMatchObject({ input_tokens: used.prompt_tokens, output_tokens: used.completion_tokens })
    // What went upstream: a chat completion NVIDIA's schema takes (with the model's defaults for
    // what the client left out; its own max_tokens wins).
    expect(upstream.requests.at(-1)!.body).toEqual({
      temperature: 1,
      top_p: 0.95,
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
      max_tokens: 256,
      stop: ['\n\nHuman:'],
      user: 'user-42',
    })
  })

  it('round-trips a tool call: tool_use out, tool_result back in', async () => {
    const first = await client.messages.create({
      model: MODEL,
      max_tokens: 256,
      tools: [weather],
      tool_choice: { type: 'auto' },
      messages: [{ role: 'user', content: 'Weather in Zürich?' }],
    })
    expect(first.stop_reason).toBe('tool_use')
    expect(first.content).toEqual([{ type: 'tool_use', id: 'call_fake_1', name: 'get_weather', input: { city: 'Zürich' } }])
    expect(upstream.requests.at(-1)!.body).toMatchObject({
      tools: [
        { type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: weather.input_schema } },
      ],
      tool_choice: 'auto',
    })

    const second = await client.messages.create({
      model: MODEL,
      max_tokens: 256,
      tools: [weather],
      messages: [
        { role: 'user', content: 'Weather in Zürich?' },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_fake_1', content: '21 °C, sunny' }] },
      ],
    })
    expect(second.stop_reason).toBe('end_turn')
    expect(second.content.at(-1)).toEqual({ type: 'text', text: ANSWER })
    expect((upstream.requests.at(-1)!.body as { messages: unknown[] }).messages).toEqual(WEATHER_ROUND_TRIP)
  })

  it('takes images as image parts, and maps tool_choice any and tool', async () => {
    await client.messages.create({
      model: MODEL,
      max_tokens: 64,
      tools: [weather, clock],
      tool_choice: { type: 'tool', name: 'get_time' },
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
            { type: 'text', text: 'What is this?' },
          ],
        },
      ],
    })
    expect(upstream.requests.at(-1)!.body).toMatchObject({
      tool_choice: { type: 'function', function: { name: 'get_time' } },
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'text', text: 'What is this?' },
          ],
        },
      ],
    })
    await client.messages.create({
      model: MODEL,
      max_tokens: 64,
      tools: [weather],
      tool_choice: { type: 'any' },
      messages: [{ role: 'user', content: 'Hi' }],
    })
    expect(upstream.requests.at(-1)!.body).toMatchObject({ tool_choice: 'required' })
  })

  it('counts the usage, cost and end user like any chat completion', async () => {
    await client.messages.create({
      model: MODEL,
      max_tokens: 64,
      messages: [{ role: 'user', content: 'Count me' }],
      metadata: { user_id: 'counted' },
    })
    const used = lastUpstreamUsage(upstream, false)
    await waitFor(async () => {
      const res = await gw.admin('GET', `/admin/usage?team=agents&end_user=counted`)
      return ((await res.json()) as { data: { requests: number }[] }).data[0]?.requests === 1
    }, 'the usage to settle')
    const rows = (await (await gw.admin('GET', `/admin/usage?team=agents&end_user=counted&group_by=key`)).json()) as {
      data: { key: string; prompt_tokens: number; completion_tokens: number; estimated_requests: number }[]
    }
    expect(rows.data).toEqual([
      expect.objectContaining({
        key: keyId,
        prompt_tokens: used.prompt_tokens,
        completion_tokens: used.completion_tokens,
        estimated_requests: 0,
      }),
    ])
  })

  it('counts tokens from the gateway tokenizer, without going upstream', async () => {
    const before = upstream.requests.length
    const short = await client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] })
    const long = await client.messages.countTokens({
      model: MODEL,
      system: 'You are a careful assistant who answers in full sentences.',
      tools: [weather],
      messages: [{ role: 'user', content: 'Tell me about the weather in Zürich, Geneva and Basel, please.' }],
    })
    expect(short.input_tokens).toBeGreaterThan(0)
    expect(long.input_tokens).toBeGreaterThan(short.input_tokens + 20)
    expect(upstream.requests.length).toBe(before)
  })
})

describe('@anthropic-ai/sdk messages.stream', () => {
  it('streams thinking and text blocks in order, with the upstream usage at the end', async () => {
    const stream = client.messages.stream({ model: MODEL, max_tokens: 256, messages: [{ role: 'user', content: 'Hello' }] })
    const types: string[] = []
    stream.on('streamEvent', (event) => {
      const last = types.at(-1)
      const name = event.type === 'content_block_delta' ? `delta:${event.delta.type}` : event.type
      if (name !== last) types.push(name)
    })
    const message = await stream.finalMessage()
    expect(types).toEqual([
      'message_start',
      'content_block_start',
      'delta:thinking_delta',
      'content_block_stop',
      'content_block_start',
      'delta:text_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ])
    expect(message.content).toEqual(
      [
        { type: 'thinking', thinking: THINKING, signature: '' },
        { type: 'text', text: ANSWER, citations: null },
      ].map((b) => (b.type === 'text' ? expect.objectContaining({ type: 'text', text: ANSWER }) : b)),
    )
    const used = lastUpstreamUsage(upstream, true)
    expect(message.usage).toMatchObject({ input_tokens: used.prompt_tokens, output_tokens: used.completion_tokens })
    expect(message.stop_reason).toBe('end_turn')
  })

  it('streams parallel tool calls as tool_use blocks with their JSON input in pieces', async () => {
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 256,
      tools: [weather, clock],
      messages: [{ role: 'user', content: 'Weather and time in Zürich, in parallel.' }],
    })
    const pieces: string[] = []
    stream.on('inputJson', (partial) => pieces.push(partial))
    const message = await stream.finalMessage()
    expect(message.stop_reason).toBe('tool_use')
    expect(message.content).toEqual([
      { type: 'tool_use', id: 'call_fake_1', name: 'get_weather', input: { city: 'Zürich' } },
      { type: 'tool_use', id: 'call_fake_2', name: 'get_time', input: { city: 'Zürich' } },
    ])
    expect(pieces.length).toBe(4)
  })
})

describe('failures reach the SDK as its own error types', () => {
  it('a wrong key: AuthenticationError in Anthropic’s envelope', async () => {
    const stranger = new Anthropic({ apiKey: 'tg-not-a-key-00000000000000000000000000000000', baseURL: gw.url, maxRetries: 0 })
    const err = await stranger.messages
      .create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError)
    expect((err as InstanceType<typeof Anthropic.AuthenticationError>).error).toMatchObject({
      type: 'error',
      error: { type: 'authentication_error' },
    })
  })

  it('a bad body: BadRequestError naming the field', async () => {
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': (client as unknown as { apiKey: string }).apiKey,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
      },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'max_tokens: is required: a whole number of tokens' },
    })
  })

  it('sampling settings of older clients: temperature and top_p pass on, top_k does not', async () => {
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': client.apiKey!, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({
        model: MODEL,
        max_tokens: 16,
        temperature: 0.2,
        top_p: 0.5,
        top_k: 40,
        messages: [{ role: 'user', content: 'Hi' }],
      }),
    })
    expect(res.status).toBe(200)
    expect(upstream.requests.at(-1)!.body).toMatchObject({ temperature: 0.2, top_p: 0.5 })
    expect(upstream.requests.at(-1)!.body).not.toHaveProperty('top_k')
  })

  it('an upstream error, before and during a stream', async () => {
    upstream.enqueue({
      kind: 'error',
      status: 400,
      body: JSON.stringify({ object: 'error', message: 'bad things', type: 'BadRequestError', code: 400 }),
    })
    const bad = await client.messages
      .create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] })
      .catch((e: unknown) => e)
    expect(bad).toBeInstanceOf(Anthropic.BadRequestError)

    // Cut mid-way: the stream ends with an error event, which the SDK raises.
    cutStreamNext(upstream, MODEL, 'Half an ans')
    const stream = client.messages.stream({ model: MODEL, max_tokens: 64, messages: [{ role: 'user', content: 'Hi' }] })
    const texts: string[] = []
    stream.on('text', (t) => texts.push(t))
    const cut = await stream.finalMessage().catch((e: unknown) => e)
    expect(cut).toBeInstanceOf(Anthropic.APIError)
    expect(texts.join('')).toBe('Half an ans')
  })

  it('a quota refusal: RateLimitError, nothing sent upstream', async () => {
    const tight = new Anthropic({ apiKey: await oneRequestPerMinute(gw, 'tight'), baseURL: gw.url, maxRetries: 0 })
    await tight.messages.create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] })
    const before = upstream.requests.length
    const refused = await tight.messages
      .create({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] })
      .catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(Anthropic.RateLimitError)
    expect((refused as InstanceType<typeof Anthropic.RateLimitError>).error).toMatchObject({ error: { type: 'rate_limit_error' } })
    const streamed = await tight.messages
      .stream({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] })
      .finalMessage()
      .catch((e: unknown) => e)
    expect(streamed).toBeInstanceOf(Anthropic.RateLimitError)
    expect(upstream.requests.length).toBe(before)
  })
})
