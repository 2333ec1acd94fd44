import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

/**
 * A client that goes away while its request is being admitted (the admission waits on Redis):
 * the request still settles, its concurrency slot comes back, and nothing goes upstream.
 */

const LLAMA = 'meta/llama-3.1-8b-instruct'

describe('a client gone during admission', () => {
  let redis: RedisServer
  let upstream: FakeUpstream
  let gw: TestGateway
  let client: Redis

  beforeAll(async () => {
    redis = await startRedis()
    client = new Redis(redis.url)
    upstream = await new FakeUpstream().start()
    gw = await startGateway({ upstream, env: { REDIS_URL: redis.url } })
  })
  afterAll(async () => {
    redis.process.kill('SIGCONT')
    client.disconnect()
    await gw.close()
    await upstream.close()
    await redis.stop()
  })

  const chat = (key: string, signal?: AbortSignal) =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: LLAMA, messages: [{ role: 'user', content: 'hi' }] }),
      signal,
    })

  const inFlight = async () => {
    const team = (await (await gw.admin('GET', '/admin/teams/gone')).json()) as {
      quota: { team: { concurrent_requests: { in_flight?: number; used: number } } }
    }
    return team.quota.team.concurrent_requests
  }

  it('settles it: the slot is free again and the upstream never sees it', async () => {
    expect((await gw.admin('POST', '/admin/teams', { id: 'gone', limits: { concurrent_requests: 1 } })).status).toBe(201)
    const { key } = (await (await gw.admin('POST', '/admin/teams/gone/keys', {})).json()) as { key: string }
    expect((await chat(key)).status).toBe(200) // the key is now cached: no Redis needed to authenticate
    const before = upstream.requests.length
    // That request's settlement and audit entry are in Redis before it stops, so that what it then
    // holds unread is the next request's admission (on a loaded machine they could still be in
    // its buffer, and the client would leave before its request had even reached the gateway).
    await waitFor(async () => (await inFlight()).used === 0, 'the first request to settle')
    await waitFor(async () => (await client.xlen('tg:audit')) === 1, 'its audit entry')

    // Redis stops answering (the connection stays open), so the admission waits; the client leaves.
    redis.process.kill('SIGSTOP')
    const controller = new AbortController()
    const pending = chat(key, controller.signal).catch((err: Error) => err)
    await waitFor(() => redis.unread() > 0, 'the admission to reach the stopped Redis')
    controller.abort()
    expect(await pending).toBeInstanceOf(Error)
    // The gateway sees the client leave while the admission still waits.
    await waitFor(
      () => gw.logLines().some((l) => l.msg === 'request' && l.aborted === true && l.team === 'gone'),
      'the aborted request to be logged',
    )
    redis.process.kill('SIGCONT')

    await waitFor(async () => (await inFlight()).used === 0, 'the slot to come back')
    expect(upstream.requests.length).toBe(before)
    const again = await chat(key)
    expect(again.status).toBe(200)
    await again.text()
  })
})
