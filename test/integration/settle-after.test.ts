import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { lastUpstreamUsage } from '../helpers/adapted.js'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Settlement comes after the response, never before its last byte: with Redis stopped (SIGSTOP,
 * its connections open) between a request's admission and its answer, the client still gets the
 * whole answer, JSON or stream, while its settlement waits in Redis's unread buffer; once Redis
 * runs again the request settles (its slot back, its tokens counted).
 */

const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user' as const, content: 'Tell me about Zürich.' }]

describe("a request's settlement and its client's last byte", () => {
  let redis: RedisServer
  let upstream: FakeUpstream
  let gw: TestGateway
  let key: string

  beforeAll(async () => {
    redis = await startRedis()
    upstream = await new FakeUpstream().start()
    gw = await startGateway({ upstream, env: { REDIS_URL: redis.url } })
    const limits = { concurrent_requests: 2, tokens_per_day: 1_000_000, requests_per_minute: 100 }
    expect((await gw.admin('POST', '/admin/teams', { id: 'last', limits })).status).toBe(201)
    ;({ key } = (await (await gw.admin('POST', '/admin/teams/last/keys', {})).json()) as { key: string })
  })
  afterAll(async () => {
    redis.process.kill('SIGCONT')
    await gw.close()
    await upstream.close()
    await redis.stop()
  })

  const quota = async () => {
    const team = (await (await gw.admin('GET', '/admin/teams/last')).json()) as {
      quota: { team: { concurrent_requests: { used: number }; tokens_per_day: { used: number } } }
    }
    return { inFlight: team.quota.team.concurrent_requests.used, tokens: team.quota.team.tokens_per_day.used }
  }

  /**
   * Runs `request` with the upstream's answer held until Redis is stopped: admission is done
   * (the request reached the upstream), then Redis stops, then the answer goes. Returns what the
   * request returned, read whole while Redis was still stopped, and the upstream's usage figure.
   */
  async function withRedisStopped<T>(streamed: boolean, request: () => Promise<T>): Promise<{ result: T; total: number }> {
    // Nothing of earlier requests left to reach Redis (their settlements and audit entries are in).
    await waitFor(async () => (await quota()).inFlight === 0, 'earlier requests to settle')
    const sent = upstream.requests.length
    const release = upstream.hold()
    const pending = request()
    await waitFor(() => upstream.requests.length > sent, 'the request to be admitted and reach the upstream')
    redis.process.kill('SIGSTOP')
    release()
    const result = await pending
    // The answer is whole, and Redis has answered nothing since: the settlement waits there.
    await waitFor(() => redis.unread() > 0, 'the settlement to reach the stopped Redis')
    return { result, total: lastUpstreamUsage(upstream, streamed).total_tokens }
  }

  it('a JSON answer reaches its client whole while its settlement waits on a stopped Redis', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 })
    const before = (await quota()).tokens
    const { result, total } = await withRedisStopped(false, () => client.chat.completions.create({ model: LLAMA, messages }))
    expect(result.choices[0]!.message.content!.length).toBeGreaterThan(0)
    expect(result.usage!.total_tokens).toBe(total)
    redis.process.kill('SIGCONT')
    await waitFor(async () => (await quota()).inFlight === 0, 'the request to settle once Redis runs')
    expect((await quota()).tokens).toBe(before + total)
  })

  it("a stream's last event and its end reach the client while its settlement waits on a stopped Redis", async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 })
    const before = (await quota()).tokens
    const { result, total } = await withRedisStopped(true, async () => {
      const stream = await client.chat.completions.create({ model: LLAMA, messages, stream: true, stream_options: { include_usage: true } })
      const chunks = []
      for await (const chunk of stream) chunks.push(chunk) // ends only at the stream's end ([DONE])
      return chunks
    })
    expect(result.at(-1)!.usage!.total_tokens).toBe(total)
    redis.process.kill('SIGCONT')
    await waitFor(async () => (await quota()).inFlight === 0, 'the request to settle once Redis runs')
    expect((await quota()).tokens).toBe(before + total)
  })
})
