import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { hashClientKey } from '../../src/keys.js'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { sample } from '../helpers/metrics.js'
import { withGateway, type Envelope } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

/** Redis killed in the middle of a load and started again: nothing answered badly, nothing lost. */

const LLAMA = 'meta/llama-3.1-8b-instruct'
const messages = [{ role: 'user', content: 'hi' }]

let upstream: FakeUpstream
let dir: string

beforeAll(async () => {
  upstream = await new FakeUpstream().start()
  dir = mkdtempSync(join(tmpdir(), 'tg-outage-'))
})
afterAll(async () => {
  await upstream.close()
  rmSync(dir, { recursive: true, force: true })
})

// Redis keeps its data across the kill (append-only file, fsync always), as production Redis would.
const persistent = (sub: string) => ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', join(dir, sub)]

async function startPersistent(sub: string, port?: number): Promise<RedisServer> {
  const { mkdirSync } = await import('node:fs')
  mkdirSync(join(dir, sub), { recursive: true })
  return startRedis(persistent(sub), port)
}

describe('a Redis outage', () => {
  it("fail-open: every request answered, and usage totals equal the upstream's once Redis is back", async () => {
    let redis = await startPersistent('open')
    await withGateway({ upstream, env: { REDIS_URL: redis.url } }, async (gw) => {
      await gw.admin('POST', '/admin/teams', {
        id: 'outage',
        limits: { requests_per_minute: 100_000, tokens_per_day: 100_000_000, concurrent_requests: 100 },
      })
      const { key } = (await (await gw.admin('POST', '/admin/teams/outage/keys', {})).json()) as { key: string }

      let reported = 0
      const statuses: number[] = []
      const requestIds = new Set<string>()
      const one = async (i: number) => {
        const stream = i % 3 === 0
        const res = await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: LLAMA, messages, ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) }),
        })
        statuses.push(res.status)
        requestIds.add(res.headers.get('x-request-id')!)
        const text = await res.text()
        if (res.status !== 200) return
        if (stream) {
          const line = text.split('\n').find((l) => l.includes('"choices":[],"usage":{'))!
          reported += (JSON.parse(line.slice(6)) as { usage: { total_tokens: number } }).usage.total_tokens
        } else {
          reported += (JSON.parse(text) as { usage: { total_tokens: number } }).usage.total_tokens
        }
      }

      const total = 90
      for (let i = 0; i < total; i += 3) {
        if (i === 30) {
          // Up to here Redis decided every admission.
          expect(sample(await (await fetch(`${gw.url}/metrics`)).text(), 'tollgate_local_admissions_total')).toBe(0)
          await redis.stop() // killed (SIGKILL) with requests around it
        }
        if (i === 60) redis = await startPersistent('open', redis.port)
        await Promise.all([one(i), one(i + 1), one(i + 2)])
        if (i === 57) {
          // Deep in the outage: still serving, and the usage waits in memory.
          const during = (await (await fetch(`${gw.url}/readyz`)).json()) as {
            status: string
            redis: string
            usage_buffer: { waiting: number }
            audit_buffer: { waiting: number }
          }
          expect(during).toMatchObject({ status: 'degraded', redis: 'down' })
          expect(during.usage_buffer.waiting).toBeGreaterThanOrEqual(27)
          // The audit entries of those requests wait too (those of a batch that failed as well).
          expect(during.audit_buffer.waiting).toBeGreaterThanOrEqual(27)
          // /metrics still answers, from what the process holds.
          const metrics = await (await fetch(`${gw.url}/metrics`)).text()
          expect(sample(metrics, 'tollgate_usage_buffer_size')).toBeGreaterThanOrEqual(27)
          expect(sample(metrics, 'tollgate_audit_buffer_size')).toBe(during.audit_buffer.waiting)
          expect(sample(metrics, 'tollgate_redis_errors_total')).toBeGreaterThan(0)
          expect(sample(metrics, 'tollgate_upstream_keys', { upstream: 'nvidia', state: 'available' })).toBe(1)
          // Every request since the kill was admitted by this instance's own limits.
          expect(sample(metrics, 'tollgate_local_admissions_total')).toBeGreaterThanOrEqual(27)
        }
      }
      expect(statuses).toEqual(Array(total).fill(200))

      await waitFor(
        async () => {
          const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as {
            redis: string
            usage_buffer: { waiting: number }
            audit_buffer: { waiting: number }
          }
          return ready.redis === 'up' && ready.usage_buffer.waiting === 0 && ready.audit_buffer.waiting === 0
        },
        'the buffered usage and audit entries to be written',
        15_000,
      )
      const rows = (
        (await (await gw.admin('GET', '/admin/usage?team=outage')).json()) as {
          data: { requests: number; total_tokens: number; estimated_requests: number }[]
        }
      ).data
      expect(rows).toEqual([expect.objectContaining({ requests: total, total_tokens: reported, estimated_requests: 0 })])
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as {
        usage_buffer: { dropped: number }
        audit_buffer: { dropped: number }
      }
      expect(ready.usage_buffer.dropped).toBe(0)
      expect(ready.audit_buffer.dropped).toBe(0)
      // The audit trail has every request, those of the outage too. (A batch Redis wrote just
      // before the kill, whose reply was lost, may be there twice: at least once, never lost.)
      // (The last entries go out in a batch a moment after their requests.)
      expect(requestIds.size).toBe(total)
      const client = new Redis(redis.url)
      const audited = async () =>
        new Set(((await client.xrange('tg:audit', '-', '+')) as [string, string[]][]).map(([, f]) => f[f.indexOf('request_id') + 1]!))
      await waitFor(async () => (await audited()).size === total, 'an audit entry for each of the requests')
      expect(await audited()).toEqual(requestIds)
      client.disconnect()
    })
    await redis.stop()
  })

  it('fail-open: after a pub/sub reconnect every cached key is looked up again, and still served from memory if Redis then goes', async () => {
    const redis = await startRedis()
    const admin = new Redis(redis.url)
    try {
      await withGateway({ upstream, env: { REDIS_URL: redis.url } }, async (gw) => {
        await gw.admin('POST', '/admin/teams', { id: 'stale', limits: { requests_per_minute: 1000 } })
        const newKey = async () => ((await (await gw.admin('POST', '/admin/teams/stale/keys', {})).json()) as { key: string }).key
        const [kept, revoked] = [await newKey(), await newKey()]
        const call = (key: string) =>
          fetch(`${gw.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: LLAMA, messages }),
          })
        expect((await call(kept)).status).toBe(200) // both keys are now cached
        expect((await call(revoked)).status).toBe(200)

        // Cut only the gateway's pub/sub connection, and revoke a key behind its back (no message).
        const subscribed = async () => ((await admin.pubsub('NUMSUB', 'tg:changes')) as [string, number])[1]
        expect(await subscribed()).toBe(1)
        await admin.client('KILL', 'TYPE', 'pubsub')
        expect(await admin.del(`tg:{dir}:keyhash:${hashClientKey(revoked)}`)).toBe(1)
        await waitFor(async () => (await subscribed()) === 1, 'the gateway to subscribe again', 10_000)

        // Changes may have been missed while it was away, so the cache is not trusted: looked up again.
        expect((await call(revoked)).status).toBe(401)

        // With Redis gone the lookup fails, and fail-open serves the key it knew.
        admin.disconnect()
        await redis.stop()
        expect((await call(kept)).status).toBe(200)
      })
    } finally {
      admin.disconnect()
      await redis.stop()
    }
  })

  it("fail-closed: requests get a 503 in OpenAI's envelope while Redis is away, with or without limits, and work again after", async () => {
    let redis = await startPersistent('closed')
    await withGateway({ upstream, env: { REDIS_URL: redis.url, REDIS_FAILURE_MODE: 'closed' } }, async (gw) => {
      await gw.admin('POST', '/admin/teams', { id: 'strict', limits: { requests_per_minute: 1000 } })
      const { key } = (await (await gw.admin('POST', '/admin/teams/strict/keys', {})).json()) as { key: string }
      // A team without limits, whose key this instance has cached: no limit needs Redis, and it
      // is refused all the same.
      await gw.admin('POST', '/admin/teams', { id: 'unlimited' })
      const { key: free } = (await (await gw.admin('POST', '/admin/teams/unlimited/keys', {})).json()) as { key: string }
      const call = (bearer = key) =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: LLAMA, messages }),
        })
      expect((await call()).status).toBe(200)
      expect((await call(free)).status).toBe(200)
      await redis.stop()
      for (const bearer of [key, free]) {
        const down = await call(bearer)
        expect(down.status).toBe(503)
        expect(((await down.json()) as Envelope).error.code).toBe('store_unavailable')
      }
      redis = await startPersistent('closed', redis.port)
      await waitFor(async () => (await call()).status === 200, 'requests to work again', 15_000)
      expect((await call(free)).status).toBe(200)
    })
    await redis.stop()
  })
})

describe('a Redis that may evict keys when full', () => {
  const evicting = 'redis may evict keys when full'
  const warnings = (lines: Record<string, unknown>[]) => lines.filter((l) => String(l.msg).startsWith(evicting))

  it('is named in a warning at start, with its policy: an evicted quota key would forget what its limit counted', async () => {
    // (volatile-lru, as some managed services set: every quota key has a TTL, so it may take them)
    const redis = await startRedis(['--maxmemory', '64mb', '--maxmemory-policy', 'volatile-lru'])
    try {
      await withGateway({ upstream, env: { REDIS_URL: redis.url } }, async (gw) => {
        await waitFor(async () => warnings(gw.logLines()).length > 0, 'the eviction warning')
        expect(warnings(gw.logLines())[0]).toMatchObject({ level: 40, maxmemory_policy: 'volatile-lru', maxmemory: 64 * 1024 * 1024 })
      })
    } finally {
      await redis.stop()
    }
  })

  it('is not warned about when nothing can be evicted: no maxmemory, or noeviction', async () => {
    for (const args of [[], ['--maxmemory', '64mb', '--maxmemory-policy', 'noeviction']]) {
      const redis = await startRedis(args)
      try {
        await withGateway({ upstream, env: { REDIS_URL: redis.url } }, async (gw) => {
          await waitFor(async () => gw.logLines().some((l) => String(l.msg).startsWith('redis evicts no keys')), 'the eviction check')
          expect(warnings(gw.logLines())).toEqual([])
        })
      } finally {
        await redis.stop()
      }
    }
  })
})
