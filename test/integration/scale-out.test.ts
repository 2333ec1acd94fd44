import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startBalancer, type Balancer } from '../helpers/balancer.js'
import { withGateway } from '../helpers/gateway.js'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { startServer } from '../helpers/process.js'
import { freePort, startRedis, type RedisServer } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Two gateway processes (the entry file, as deployed) on one Redis, behind a round-robin load
 * balancer, used through the real `openai` client: one team's limits and usage hold across both.
 */

const ADMIN = 'scale-out-admin-token-00000000000'
const LLAMA = 'meta/llama-3.1-8b-instruct'

describe('two replicas behind a load balancer', () => {
  let redis: RedisServer
  let upstream: FakeUpstream
  let replicas: { url: string; child: ChildProcess }[]
  let balancer: Balancer

  const admin = (url: string, method: string, path: string, body?: unknown) =>
    fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })

  beforeAll(async () => {
    redis = await startRedis()
    upstream = await new FakeUpstream().start()
    replicas = await Promise.all(
      [0, 1].map(async () => {
        const port = await freePort()
        const url = `http://127.0.0.1:${port}`
        const { child } = startServer({
          PORT: String(port),
          HOST: '127.0.0.1',
          ADMIN_TOKEN: ADMIN,
          REDIS_URL: redis.url,
          NVIDIA_BASE_URL: upstream.baseUrl,
          NVIDIA_API_KEY: upstream.apiKeys[0]!,
        })
        await waitFor(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'a replica to be ready', 30_000)
        return { url, child }
      }),
    )
    balancer = await startBalancer(replicas.map((r) => r.url))
  }, 60_000)

  afterAll(async () => {
    await balancer?.close()
    await Promise.all(
      (replicas ?? []).map(async ({ child }) => {
        if (child.exitCode !== null) return
        child.kill('SIGTERM')
        await once(child, 'exit')
      }),
    )
    await upstream?.close()
    await redis?.stop()
  })

  it("holds one team's request limit and usage across both, and a revocation on one reaches the other", async () => {
    // The team is made on one replica and its key on the other: one store.
    expect((await admin(replicas[0]!.url, 'POST', '/admin/teams', { id: 'shared', limits: { requests_per_minute: 12 } })).status).toBe(201)
    const made = await admin(replicas[1]!.url, 'POST', '/admin/teams/shared/keys', {})
    const { key, id } = (await made.json()) as { key: string; id: string }

    const client = new OpenAI({ apiKey: key, baseURL: `${balancer.url}/v1`, maxRetries: 0 })
    const settled = await Promise.allSettled(
      Array.from({ length: 20 }, () =>
        client.chat.completions.create({ model: LLAMA, messages: [{ role: 'user', content: 'Hello from behind the balancer.' }] }),
      ),
    )
    const answered = settled.filter((s) => s.status === 'fulfilled').map((s) => s.value)
    const refused = settled
      .filter((s): s is PromiseRejectedResult => s.status === 'rejected')
      .map((s) => s.reason as InstanceType<typeof OpenAI.RateLimitError>)
    expect(answered).toHaveLength(12)
    expect(refused).toHaveLength(8)
    for (const err of refused) {
      expect(err).toBeInstanceOf(OpenAI.RateLimitError)
      expect(err.code).toBe('rate_limit_exceeded')
    }
    // Both replicas took a share of the calls (the balancer alternates).
    expect(balancer.counts[0]).toBeGreaterThanOrEqual(10)
    expect(balancer.counts[1]).toBeGreaterThanOrEqual(10)

    // Usage, read from either replica, is the upstream's own sum for the 12 answered calls.
    const reported = answered.reduce((sum, r) => sum + r.usage!.total_tokens, 0)
    expect(reported).toBeGreaterThan(0)
    for (const { url } of replicas) {
      await waitFor(async () => {
        const rows = (
          (await (await admin(url, 'GET', '/admin/usage?team=shared')).json()) as { data: { requests: number; total_tokens: number }[] }
        ).data
        return rows[0]?.requests === 12 && rows[0]?.total_tokens === reported
      }, 'usage of 12 requests on every replica')
    }

    // Revoked through one replica, refused at once by both (the key caches are told via Redis).
    expect((await admin(replicas[0]!.url, 'DELETE', `/admin/keys/${id}`)).status).toBeLessThan(300)
    for (const { url } of replicas) {
      const direct = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 })
      await expect(direct.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError)
    }
  })
})

describe('deploy/nginx.conf in front of the replicas', () => {
  it('ends idle connections before a replica does, so no request goes out on one the replica is closing', async () => {
    const conf = readFileSync(new URL('../../deploy/nginx.conf', import.meta.url), 'utf8')
    const upstreamBlock = /upstream tollgate \{([^}]*)\}/.exec(conf)?.[1] ?? ''
    const idle = /keepalive_timeout (\d+)s;/.exec(upstreamBlock)
    expect(idle, 'keepalive_timeout in the upstream block').not.toBeNull()
    await withGateway({}, async (gw) => {
      expect(gw.app.server.keepAliveTimeout).toBeGreaterThan(Number(idle![1]) * 1000)
    })
  })
})
