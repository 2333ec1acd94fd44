import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import Anthropic from '@anthropic-ai/sdk'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

/**
 * Streams translated to Anthropic's events are translated as they pass, one upstream event held at
 * a time: over 1,000 of them the gateway's heap does not grow with the streams served.
 */

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

let upstream: FakeUpstream
let gw: TestGateway
let client: Anthropic

beforeAll(async () => {
  upstream = await new FakeUpstream().start()
  gw = await startGateway({ upstream, env: { LOG_LEVEL: 'warn' } })
  client = new Anthropic({ apiKey: (await gw.createKey('memory')).key, baseURL: gw.url, maxRetries: 0 })
})
afterAll(async () => {
  await gw.close()
  await upstream.close()
})

/** `count` streams, `at` a time, each read to its end. */
async function streams(count: number, at = 20): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: at }, async () => {
      while (next++ < count) {
        const stream = await client.messages.create({
          model: 'minimaxai/minimax-m2.1',
          max_tokens: 64,
          stream: true,
          messages: [{ role: 'user', content: 'Hello' }],
        })
        let events = 0
        for await (const _ of stream) events++
        expect(events).toBeGreaterThan(10)
      }
    }),
  )
}

/** The JavaScript heap and the buffers outside it (where stream bytes live), after a full collection. */
function heapAfterGc(): number {
  gc()
  gc()
  const { heapUsed, arrayBuffers } = process.memoryUsage()
  return heapUsed + arrayBuffers
}

it('keeps the heap flat over 1,000 streamed translations', { timeout: 120_000 }, async () => {
  // (The stream bodies the fake upstream keeps for other tests' checks are let go as it goes.)
  const drop = setInterval(() => upstream.streams.splice(0), 50)
  try {
    await streams(200)
    const warm = heapAfterGc()
    await streams(1_000)
    const after = heapAfterGc()
    // (Keeping every stream's bytes would add tens of MB here.)
    expect(after - warm).toBeLessThan(4 * 1024 * 1024)
  } finally {
    clearInterval(drop)
  }
})
