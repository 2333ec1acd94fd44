import { ChatOpenAI } from '@langchain/openai'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream, STREAM_TEXT, UPSTREAM_MODELS } from '../helpers/fake-upstream.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

/** The real clients people point at the gateway, against a listening gateway. */

const MINIMAX = 'minimaxai/minimax-m2.1'

let upstream: FakeUpstream
let gw: TestGateway
let client: OpenAI
let key: string

beforeAll(async () => {
  upstream = await new FakeUpstream().start()
  const config = `aliases:\n  minimax: ${MINIMAX}\n`
  gw = await startGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml', NVIDIA_RETRIES: '0' }, files: { '/c.yaml': config } })
  key = (await gw.createKey()).key
  client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 })
})
afterAll(async () => {
  await gw.close()
  await upstream.close()
})

describe('openai (Node)', () => {
  it('non-streaming chat', async () => {
    const completion = await client.chat.completions.create({ model: MINIMAX, messages: [{ role: 'user', content: 'Hello' }] })
    expect(completion.choices[0]!.message.content).toBe(STREAM_TEXT)
    expect(completion.usage?.total_tokens).toBeGreaterThan(0)
  })

  it('streaming chat, text reassembled exactly, with and without usage', async () => {
    for (const include of [false, true]) {
      const stream = await client.chat.completions.create({
        model: MINIMAX,
        messages: [{ role: 'user', content: 'Hello' }],
        stream: true,
        ...(include ? { stream_options: { include_usage: true } } : {}),
      })
      let text = ''
      let usage = null
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? ''
        if (chunk.usage) usage = chunk.usage
      }
      expect(text).toBe(STREAM_TEXT)
      expect(usage === null).toBe(!include)
    }
  })

  it('resolves an alias to its model and its defaults', async () => {
    await client.chat.completions.create({ model: 'minimax', messages: [{ role: 'user', content: 'Hello' }] })
    expect(upstream.requests.at(-1)!.body).toMatchObject({ model: MINIMAX, temperature: 1, top_p: 0.95, max_tokens: 8192 })
  })

  it('tool calls', async () => {
    const completion = await client.chat.completions.create({
      model: MINIMAX,
      messages: [{ role: 'user', content: 'Weather in Zürich?' }],
      tools: [
        { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
      ],
    })
    const call = completion.choices[0]!.message.tool_calls![0]!
    expect(call.type === 'function' && call.function.name).toBe('get_weather')
    expect(call.type === 'function' && JSON.parse(call.function.arguments)).toEqual({ city: 'Zürich' })
    expect(completion.choices[0]!.finish_reason).toBe('tool_calls')
  })

  it('models.list and models.retrieve', async () => {
    const ids: string[] = []
    for await (const model of client.models.list()) ids.push(model.id)
    for (const id of [...UPSTREAM_MODELS, 'minimax']) expect(ids).toContain(id)
    expect(new Set(ids).size).toBe(ids.length)
    const alias = await client.models.retrieve('minimax')
    expect(alias).toMatchObject({ id: 'minimax', root: MINIMAX })
    expect((await client.models.retrieve(MINIMAX)).id).toBe(MINIMAX)
  })

  it('embeddings', async () => {
    const result = await client.embeddings.create({ model: 'nvidia/nv-embedqa-e5-v5', input: ['one', 'two'], encoding_format: 'float' })
    expect(result.data).toHaveLength(2)
    expect(result.data[0]!.embedding).toEqual([0.125, -0.5, 0.03, 0.75])
  })

  it('completions', async () => {
    const result = await client.completions.create({ model: 'meta/llama-3.1-8b-instruct', prompt: 'Say hi' })
    expect(result.choices[0]!.text).toBe(STREAM_TEXT)
  })

  it('raises the right exception classes, with useful messages', async () => {
    const bad = new OpenAI({ apiKey: `tg-${'x'.repeat(43)}`, baseURL: `${gw.url}/v1`, maxRetries: 0 })
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError)

    upstream.enqueue({ kind: 'error', status: 429, body: '{"status":429,"title":"Too Many Requests"}' })
    const limited = client.chat.completions.create({ model: MINIMAX, messages: [{ role: 'user', content: 'x' }] })
    await expect(limited).rejects.toBeInstanceOf(OpenAI.RateLimitError)

    const badRequest = client.chat.completions.create({ model: MINIMAX, messages: [] })
    await expect(badRequest).rejects.toMatchObject({ status: 400, code: 'invalid_type', param: 'messages' })

    upstream.enqueue({
      kind: 'error',
      status: 422,
      body: '{"error":"body -> foo\\n  Extra inputs are not permitted (type=extra_forbidden)"}',
    })
    const unprocessable = client.chat.completions.create({ model: MINIMAX, messages: [{ role: 'user', content: 'x' }] })
    await expect(unprocessable).rejects.toBeInstanceOf(OpenAI.UnprocessableEntityError)
    await expect(unprocessable).rejects.toThrow(/Extra inputs are not permitted/)
  })
})

describe('@langchain/openai', () => {
  it('ChatOpenAI streams through the gateway', async () => {
    const model = new ChatOpenAI({ model: MINIMAX, apiKey: key, configuration: { baseURL: `${gw.url}/v1` }, maxRetries: 0 })
    let text = ''
    for await (const chunk of await model.stream('Hello')) text += typeof chunk.content === 'string' ? chunk.content : ''
    expect(text).toBe(STREAM_TEXT)
    // LangChain asks for usage on every stream; the gateway passes its request on as sent.
    expect(upstream.requests.at(-1)!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } })
  })

  it('ChatOpenAI invoke', async () => {
    const model = new ChatOpenAI({ model: MINIMAX, apiKey: key, configuration: { baseURL: `${gw.url}/v1` }, maxRetries: 0 })
    const message = await model.invoke('Hello')
    expect(message.content).toBe(STREAM_TEXT)
  })
})
