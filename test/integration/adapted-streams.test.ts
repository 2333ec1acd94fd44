import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { beforeAll, describe, expect, it } from 'vitest'
import type { FakeUpstream } from '../helpers/fake-upstream.js'
import { useGateway, type TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Streams translated to another protocol (Anthropic's Messages, OpenAI's Responses) are
 * translated as they pass, one upstream event held at a time: over 1,000 of them the gateway's
 * memory does not grow with the streams served. A client that leaves mid-stream stops the upstream
 * call at once, as on the chat route, and the request settles.
 */

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const MODEL = 'minimaxai/minimax-m2.1'

const ctx = useGateway({ env: { LOG_LEVEL: 'warn' } }, 'streams')
let upstream: FakeUpstream
let gw: TestGateway
let key: string
let anthropic: Anthropic
let openai: OpenAI

beforeAll(() => {
  ;({ upstream, gw, key } = ctx)
  anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 })
  openai = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 })
})

const PROTOCOLS = {
  messages: async () => {
    const stream = await anthropic.messages.create({
      model: MODEL,
      max_tokens: 64,
      stream: true,
      messages: [{ role: 'user', content: 'Hello' }],
    })
    let events = 0
    for await (const _ of stream) events++
    return events
  },
  responses: async () => {
    const stream = await openai.responses.create({ model: MODEL, stream: true, input: 'Hello' })
    let events = 0
    for await (const _ of stream) events++
    return events
  },
}

/** `count` streams, `at` a time, each read to its end. */
async function streams(read: () => Promise<number>, count: number, at = 20): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: at }, async () => {
      while (next++ < count) expect(await read()).toBeGreaterThan(10)
    }),
  )
}

/** The JavaScript heap and the buffers outside it (where stream bytes live), after a full collection. */
function memoryAfterGc(): number {
  gc()
  gc()
  const { heapUsed, arrayBuffers } = process.memoryUsage()
  return heapUsed + arrayBuffers
}

describe.each(Object.entries(PROTOCOLS))('streams translated to %s', (protocol, read) => {
  it('keep memory flat over 1,000 of them', { timeout: 120_000 }, async () => {
    // (The stream bodies the fake upstream keeps for other tests' checks are let go as it goes.)
    const drop = setInterval(() => upstream.streams.splice(0), 50)
    try {
      await streams(read, 200)
      const warm = memoryAfterGc()
      await streams(read, 1_000)
      // (Keeping every stream's bytes would add tens of MB here.)
      expect(memoryAfterGc() - warm).toBeLessThan(4 * 1024 * 1024)
    } finally {
      clearInterval(drop)
    }
  })

  it('stop the upstream call when the client leaves mid-stream, and settle', async () => {
    upstream.sliceDelayMs = 20
    const closedBefore = upstream.closedEarly
    const estimated = async () =>
      ((await (await gw.admin('GET', '/admin/usage?team=streams')).json()) as { data: { estimated_requests: number }[] }).data[0]
        ?.estimated_requests ?? 0
    const estimatedBefore = await estimated()
    try {
      const controller = new AbortController()
      const path = protocol === 'messages' ? '/v1/messages' : '/v1/responses'
      const body =
        protocol === 'messages'
          ? { model: MODEL, max_tokens: 64, stream: true, messages: [{ role: 'user', content: `Leave ${protocol}` }] }
          : { model: MODEL, stream: true, input: `Leave ${protocol}` }
      const res = await fetch(gw.url + path, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: controller.signal,
      })
      expect(res.status).toBe(200)
      const first = await res.body!.getReader().read()
      expect(Buffer.from(first.value!).toString()).toMatch(/^event: (message_start|response\.created)\n/)
      controller.abort()
      await waitFor(() => upstream.closedEarly > closedBefore, 'the upstream call to be cancelled')
      await waitFor(async () => (await estimated()) === estimatedBefore + 1, 'the abandoned stream to settle, estimated')
    } finally {
      upstream.sliceDelayMs = 0
    }
  })
})
