import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream, keyOf } from '../helpers/fake-upstream.js'
import { abandonStream, startGateway, withGateway, type Envelope, type TestGateway } from '../helpers/gateway.js'
import { keyStates } from '../helpers/metrics.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

/** Key pool, retries, fallbacks, timeouts and aborts, against the fake upstream and a real Redis. */

const LLAMA = 'meta/llama-3.1-8b-instruct'
const MINIMAX = 'minimaxai/minimax-m2.1'
const messages = [{ role: 'user', content: 'hi' }]
const KEYS = ['nvapi-pool-key-aaaa', 'nvapi-pool-key-bbbb', 'nvapi-pool-key-cccc']

let upstream: FakeUpstream
let redis: RedisServer

beforeAll(async () => {
  upstream = await new FakeUpstream(KEYS).start()
  redis = await startRedis()
})
afterAll(async () => {
  await upstream.close()
  await redis.stop()
})

const config = (extra = '') => `upstreams:
  nvidia:
    base_url: ${upstream.baseUrl}
    retry_base_ms: 5
${extra}`

const gatewayWith = (yaml: string, env: Record<string, string> = {}) =>
  startGateway({
    upstream,
    env: { REDIS_URL: redis.url, NVIDIA_API_KEY: KEYS.join(','), TOLLGATE_CONFIG: '/c.yaml', ...env },
    files: { '/c.yaml': yaml },
  })

function chat(gw: TestGateway, key: string, body: Record<string, unknown> = {}, signal?: AbortSignal) {
  return fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: LLAMA, messages, ...body }),
    signal,
  })
}

const usedKeys = (from: number) =>
  upstream.requests
    .slice(from)
    .filter((r) => r.method === 'POST')
    .map(keyOf)

describe('the key pool', () => {
  it('spreads a burst over three keys, none past its budget, shared by two instances; then 429 with an accurate retry-after', async () => {
    const yaml = config('    key_requests_per_minute: 5\n    key_wait_ms: 200\n')
    const [a, b] = await Promise.all([gatewayWith(yaml), gatewayWith(yaml)])
    try {
      const key = (await a.createKey('pool')).key
      const before = upstream.requests.length
      const burst = await Promise.all(Array.from({ length: 15 }, (_, i) => chat(i % 2 ? a : b, key)))
      expect(burst.map((r) => r.status)).toEqual(Array(15).fill(200))
      const counts = Object.fromEntries(KEYS.map((k) => [k, usedKeys(before).filter((u) => u === k).length]))
      expect(counts).toEqual({ [KEYS[0]!]: 5, [KEYS[1]!]: 5, [KEYS[2]!]: 5 })

      const over = await chat(a, key)
      expect(over.status).toBe(429)
      const body = (await over.json()) as Envelope
      expect(body.error.code).toBe('upstream_keys_exhausted')
      const retryAfter = Number(over.headers.get('retry-after'))
      expect(retryAfter).toBeGreaterThan(50)
      expect(retryAfter).toBeLessThanOrEqual(60)
      expect(usedKeys(before)).toHaveLength(15)
      // Both instances see every key at its budget: the state is Redis's.
      for (const gw of [a, b]) expect(await keyStates(gw.url)).toEqual({ available: 0, at_budget: 3, cooling: 0, refused: 0 })
    } finally {
      await Promise.all([a.close(), b.close()])
    }
  })

  it('skips a key that answered 429 until it has cooled down; the client sees only 200s', async () => {
    await withGateway(
      {
        upstream,
        env: { REDIS_URL: redis.url, NVIDIA_API_KEY: KEYS.join(','), TOLLGATE_CONFIG: '/c.yaml' },
        files: { '/c.yaml': config() },
      },
      async (gw) => {
        const key = (await gw.createKey('cooling')).key
        upstream.limitedKeys.set(KEYS[0]!, '1')
        const before = upstream.requests.length
        const statuses = []
        for (let i = 0; i < 9; i++) statuses.push((await chat(gw, key)).status)
        expect(statuses).toEqual(Array(9).fill(200))
        // Key 0 was asked at most once (its 429), then left alone.
        expect(usedKeys(before).filter((k) => k === KEYS[0]).length).toBeLessThanOrEqual(1)
        upstream.limitedKeys.clear()
        await new Promise((r) => setTimeout(r, 1_100))
        const after = upstream.requests.length
        for (let i = 0; i < 6; i++) expect((await chat(gw, key)).status).toBe(200)
        expect(usedKeys(after)).toContain(KEYS[0])
      },
    )
  })
  it('/metrics counts the keys by state: cooling after a 429, refused after 403s for two models, the rest available', async () => {
    const keys = [KEYS[0]!, KEYS[1]!, 'nvapi-made-up-key-the-upstream-refuses']
    const env = { REDIS_URL: redis.url, NVIDIA_API_KEY: keys.join(','), TOLLGATE_CONFIG: '/c.yaml' }
    await withGateway({ upstream, env, files: { '/c.yaml': config() } }, async (gw) => {
      const key = (await gw.createKey('key-states')).key
      expect(await keyStates(gw.url)).toEqual({ available: 3, at_budget: 0, cooling: 0, refused: 0 })
      upstream.limitedKeys.set(KEYS[0]!, '600')
      try {
        // The pool starts each pick at the next key: three requests meet all three.
        for (let i = 0; i < 3; i++) expect((await chat(gw, key)).status).toBe(200)
        // A 403 for one model may concern the model (a key not entitled to it): the key stays.
        expect(await keyStates(gw.url)).toEqual({ available: 2, at_budget: 0, cooling: 1, refused: 0 })
        // Refused for a second model too, it is the key: out of rotation.
        await waitFor(async () => {
          expect((await chat(gw, key, { model: MINIMAX })).status).toBe(200)
          return (await keyStates(gw.url)).refused === 1
        }, 'the key refused for a second model to leave the rotation')
        expect(await keyStates(gw.url)).toEqual({ available: 1, at_budget: 0, cooling: 1, refused: 1 })
      } finally {
        upstream.limitedKeys.clear()
      }
    })
  })
})

describe('retries and fallbacks', () => {
  it('a 503 then a 200: the client sees one 200 and is charged once', async () => {
    await withGateway(
      {
        upstream,
        env: { REDIS_URL: redis.url, NVIDIA_API_KEY: KEYS.join(','), TOLLGATE_CONFIG: '/c.yaml' },
        files: { '/c.yaml': config() },
      },
      async (gw) => {
        const key = (await gw.createKey('retry-once')).key
        upstream.enqueue({
          kind: 'error',
          status: 503,
          body: '{"error":{"message":"ResourceExhausted","type":"Service Unavailable","code":503}}',
        })
        const before = upstream.requests.length
        const res = await chat(gw, key)
        expect(res.status).toBe(200)
        const { usage } = (await res.json()) as { usage: { total_tokens: number } }
        expect(usedKeys(before)).toHaveLength(2)
        await waitFor(async () => {
          const rows = (
            (await (await gw.admin('GET', '/admin/usage?team=retry-once')).json()) as { data: { requests: number; total_tokens: number }[] }
          ).data
          return rows[0]?.requests === 1 && rows[0].total_tokens === usage.total_tokens
        }, 'one request charged once')
      },
    )
  })

  it('a model whose retries are spent falls back; usage goes to the model that answered', async () => {
    const yaml = config(`    retries: 1\nmodels:\n  ${MINIMAX}:\n    fallbacks: [${LLAMA}]\n`)
    await withGateway(
      { upstream, env: { REDIS_URL: redis.url, NVIDIA_API_KEY: KEYS.join(','), TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': yaml } },
      async (gw) => {
        const key = (await gw.createKey('fallback')).key
        const fail = {
          kind: 'error' as const,
          status: 500,
          body: '{"message":"Internal server error","type":"internal_server_error","code":500}',
        }
        upstream.enqueue(fail, fail)
        const before = upstream.requests.length
        const res = await chat(gw, key, { model: MINIMAX })
        expect(res.status).toBe(200)
        expect(((await res.json()) as { model: string }).model).toBe(LLAMA)
        expect(upstream.requests.slice(before).map((r) => r.body?.model)).toEqual([MINIMAX, MINIMAX, LLAMA])
        // The fallback got its own defaults (none), not the first model's.
        expect(upstream.requests.at(-1)!.body).toEqual({ model: LLAMA, messages })
        await waitFor(async () => {
          const rows = (
            (await (await gw.admin('GET', '/admin/usage?team=fallback&group_by=model')).json()) as { data: { model: string }[] }
          ).data
          return rows.length === 1 && rows[0]!.model === LLAMA
        }, 'usage against the fallback')
      },
    )
  })

  it("does not retry once bytes have gone to the client, nor errors that are the client's", async () => {
    await withGateway(
      {
        upstream,
        env: { REDIS_URL: redis.url, NVIDIA_API_KEY: KEYS.join(','), TOLLGATE_CONFIG: '/c.yaml' },
        files: { '/c.yaml': config() },
      },
      async (gw) => {
        const key = (await gw.createKey('no-retry')).key
        upstream.enqueue({
          kind: 'error',
          status: 422,
          body: '{"error":"body -> x\\n  Extra inputs are not permitted (type=extra_forbidden)"}',
        })
        const before = upstream.requests.length
        expect((await chat(gw, key)).status).toBe(422)
        expect(usedKeys(before)).toHaveLength(1)
      },
    )
  })
})

describe('timeouts and aborts', () => {
  it('a hung upstream is a 504 after the time to headers; a stalled stream ends at the idle timeout; no slot stays held', async () => {
    const yaml = config('    retries: 0\n    timeouts:\n      headers_ms: 300\n      idle_ms: 300\n')
    await withGateway(
      { upstream, env: { REDIS_URL: redis.url, NVIDIA_API_KEY: KEYS.join(','), TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': yaml } },
      async (gw) => {
        await gw.admin('POST', '/admin/teams', { id: 'hangs', limits: { concurrent_requests: 1 } })
        const key = ((await (await gw.admin('POST', '/admin/teams/hangs/keys', {})).json()) as { key: string }).key
        upstream.enqueue({ kind: 'hang' })
        const hung = await chat(gw, key)
        expect(hung.status).toBe(504)
        expect(((await hung.json()) as Envelope).error.code).toBe('upstream_timeout')

        upstream.enqueue({ kind: 'stall-after', events: 4 })
        const stalled = await chat(gw, key, { stream: true })
        expect(stalled.status).toBe(200)
        const text = await stalled.text().catch(() => 'cut')
        expect(text).not.toContain('[DONE]')

        await waitFor(async () => (await chat(gw, key)).status === 200, 'the slot to be free again')
      },
    )
  })

  it('500 clients abandoning their streams close 500 upstream requests, and leave every slot free', async () => {
    const yaml = config()
    await withGateway(
      { upstream, env: { REDIS_URL: redis.url, NVIDIA_API_KEY: KEYS.join(','), TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': yaml } },
      async (gw) => {
        await gw.admin('POST', '/admin/teams', { id: 'abandon', limits: { concurrent_requests: 50 } })
        const key = ((await (await gw.admin('POST', '/admin/teams/abandon/keys', {})).json()) as { key: string }).key
        upstream.sliceDelayMs = 5
        const closedBefore = upstream.closedEarly
        try {
          for (let batch = 0; batch < 10; batch++) {
            await Promise.all(Array.from({ length: 50 }, () => abandonStream((signal) => chat(gw, key, { stream: true }, signal), 10)))
          }
          await waitFor(() => upstream.closedEarly - closedBefore >= 500, 'the upstream to see 500 closed requests', 20_000)
          expect(upstream.closedEarly - closedBefore).toBe(500)
        } finally {
          upstream.sliceDelayMs = 0
        }
        await waitFor(async () => {
          const team = (await (await gw.admin('GET', '/admin/teams/abandon')).json()) as {
            quota: { team: { concurrent_requests: { used: number } } }
          }
          return team.quota.team.concurrent_requests.used === 0
        }, 'every slot to be free')
      },
    )
  })
})
