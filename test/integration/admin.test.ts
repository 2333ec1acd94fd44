import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { ADMIN_TOKEN, startGateway, type TestGateway, withGateway, type Envelope } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'

let upstream: FakeUpstream
let redis: RedisServer
let gw: TestGateway

beforeAll(async () => {
  upstream = await new FakeUpstream().start()
  redis = await startRedis()
  gw = await startGateway({ upstream, env: { REDIS_URL: redis.url } })
})
afterAll(async () => {
  await gw.close()
  await redis.stop()
  await upstream.close()
})

const chat = (target: TestGateway, key: string) =>
  fetch(target.url + '/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }),
  })

describe('teams', () => {
  it('creates, reads, lists, patches and deletes a team', async () => {
    const created = await gw.admin('POST', '/admin/teams', {
      id: 'research',
      name: 'Research',
      limits: { requests_per_minute: 100, tokens_per_day: 1_000_000 },
    })
    expect(created.status).toBe(201)
    const team = (await created.json()) as Record<string, unknown>
    expect(team).toMatchObject({
      object: 'team',
      id: 'research',
      name: 'Research',
      limits: { requests_per_minute: 100, tokens_per_day: 1_000_000 },
    })

    expect(await (await gw.admin('GET', '/admin/teams/research')).json()).toMatchObject(team)
    const list = (await (await gw.admin('GET', '/admin/teams')).json()) as { data: { id: string }[] }
    expect(list.data.map((t) => t.id)).toContain('research')

    const patched = await gw.admin('PATCH', '/admin/teams/research', {
      name: 'R&D',
      limits: { tokens_per_day: null, concurrent_requests: 4 },
    })
    expect(patched.status).toBe(200)
    expect(await patched.json()).toMatchObject({ name: 'R&D', limits: { requests_per_minute: 100, concurrent_requests: 4 } })
    expect(((await (await gw.admin('GET', '/admin/teams/research')).json()) as { limits: object }).limits).toEqual({
      requests_per_minute: 100,
      concurrent_requests: 4,
    })

    expect((await gw.admin('DELETE', '/admin/teams/research')).status).toBe(204)
    expect((await gw.admin('GET', '/admin/teams/research')).status).toBe(404)
    expect((await gw.admin('DELETE', '/admin/teams/research')).status).toBe(404)
  })

  it('answers 409 for an existing id, leaving the team as it was', async () => {
    await gw.admin('POST', '/admin/teams', { id: 'dup', name: 'First' })
    const again = await gw.admin('POST', '/admin/teams', { id: 'dup', name: 'Second' })
    expect(again.status).toBe(409)
    expect(((await again.json()) as Envelope).error).toMatchObject({ code: 'team_exists', param: 'id' })
    expect(await (await gw.admin('GET', '/admin/teams/dup')).json()).toMatchObject({ name: 'First' })
  })

  it.each([
    ['a missing id', {}, 'id'],
    ['a bad id', { id: 'no spaces' }, 'id'],
    ['an id not a string', { id: 7 }, 'id'],
    ['a negative limit', { id: 'x1', limits: { requests_per_minute: -1 } }, 'limits.requests_per_minute'],
    ['a fractional limit', { id: 'x2', limits: { tokens_per_day: 1.5 } }, 'limits.tokens_per_day'],
    ['a limit as a string', { id: 'x3', limits: { tokens_per_minute: '100' } }, 'limits.tokens_per_minute'],
    ['an unknown limit', { id: 'x4', limits: { requests_per_hour: 5 } }, 'limits.requests_per_hour'],
    ['an unknown field', { id: 'x5', colour: 'red' }, 'colour'],
    ['an empty name', { id: 'x6', name: '  ' }, 'name'],
  ])('refuses %s with a 400 naming the field, storing nothing', async (_label, body, param) => {
    const res = await gw.admin('POST', '/admin/teams', body)
    expect(res.status).toBe(400)
    const data = (await res.json()) as Envelope
    expect(data.error.param).toBe(param)
    expect(data.error.message).toContain(param)
    const id = (body as { id?: unknown }).id
    if (typeof id === 'string') expect((await gw.admin('GET', `/admin/teams/${encodeURIComponent(id)}`)).status).toBe(404)
  })

  it.each([
    ['a negative model limit', { id: 'm1', model_limits: { 'a/b': { tokens_per_day: -1 } } }, 'model_limits["a/b"].tokens_per_day'],
    ['an unknown model limit', { id: 'm2', model_limits: { 'a/b': { tokens_per_hour: 1 } } }, 'model_limits["a/b"].tokens_per_hour'],
    ['model limits not an object', { id: 'm3', model_limits: { 'a/b': 5 } }, 'model_limits["a/b"]'],
  ])('refuses %s with a 400 naming the field, storing nothing', async (_label, body, param) => {
    const res = await gw.admin('POST', '/admin/teams', body)
    expect(res.status).toBe(400)
    expect(((await res.json()) as Envelope).error.param).toBe(param)
    expect((await gw.admin('GET', `/admin/teams/${body.id}`)).status).toBe(404)
  })

  it('keeps per-model limits, patches them, and shows each limit with its use', async () => {
    const created = await gw.admin('POST', '/admin/teams', {
      id: 'models',
      limits: { tokens_per_day: 1000 },
      model_limits: { 'a/b': { requests_per_minute: 5 } },
    })
    expect(created.status).toBe(201)
    await gw.admin('PATCH', '/admin/teams/models', {
      model_limits: { 'a/b': { concurrent_requests: 1 }, 'c/d': { tokens_per_minute: 10 } },
    })
    const team = (await (await gw.admin('GET', '/admin/teams/models')).json()) as Record<string, unknown>
    expect(team.model_limits).toEqual({ 'a/b': { requests_per_minute: 5, concurrent_requests: 1 }, 'c/d': { tokens_per_minute: 10 } })
    expect(team.quota).toEqual({
      team: { tokens_per_day: { limit: 1000, used: 0, remaining: 1000, in_flight: 0 } },
      models: {
        'a/b': { requests_per_minute: { limit: 5, used: 0, remaining: 5 }, concurrent_requests: { limit: 1, used: 0, remaining: 1 } },
        'c/d': { tokens_per_minute: { limit: 10, used: 0, remaining: 10 } },
      },
    })
    await gw.admin('PATCH', '/admin/teams/models', { model_limits: { 'a/b': null } })
    expect(((await (await gw.admin('GET', '/admin/teams/models')).json()) as { model_limits: object }).model_limits).toEqual({
      'c/d': { tokens_per_minute: 10 },
    })
  })

  it('refuses a bad patch, changing nothing', async () => {
    await gw.admin('POST', '/admin/teams', { id: 'patchy', limits: { requests_per_minute: 5 } })
    const res = await gw.admin('PATCH', '/admin/teams/patchy', { limits: { requests_per_minute: -5 } })
    expect(res.status).toBe(400)
    expect(((await res.json()) as Envelope).error.param).toBe('limits.requests_per_minute')
    expect(((await (await gw.admin('GET', '/admin/teams/patchy')).json()) as { limits: object }).limits).toEqual({ requests_per_minute: 5 })
    expect((await gw.admin('PATCH', '/admin/teams/patchy', {})).status).toBe(400)
    expect((await gw.admin('PATCH', '/admin/teams/ghost', { name: 'x' })).status).toBe(404)
  })
})

describe('keys', () => {
  it('creates a key shown once; lists never show it; the key works', async () => {
    await gw.admin('POST', '/admin/teams', { id: 'ml' })
    const res = await gw.admin('POST', '/admin/teams/ml/keys', { name: 'laptop', expires_at: '2099-01-01T00:00:00Z' })
    expect(res.status).toBe(201)
    const created = (await res.json()) as Record<string, string>
    expect(Object.keys(created).sort()).toEqual([
      'allowed_models',
      'created_at',
      'expires_at',
      'hint',
      'id',
      'key',
      'last_used_at',
      'limits',
      'name',
      'object',
      'replaced_by',
      'revoked_at',
      'team',
    ])
    expect(created.key).toMatch(/^tg-[A-Za-z0-9]{43}$/)
    expect(created).toMatchObject({ team: 'ml', name: 'laptop', expires_at: '2099-01-01T00:00:00.000Z' })

    const listText = await (await gw.admin('GET', '/admin/teams/ml/keys')).text()
    expect(listText).toContain(created.id)
    expect(listText).not.toContain(created.key)
    expect((await chat(gw, created.key!)).status).toBe(200)
  })

  it('keys are unique and random', async () => {
    await gw.admin('POST', '/admin/teams', { id: 'many' })
    const keys = new Set<string>()
    for (let i = 0; i < 20; i++) keys.add(((await (await gw.admin('POST', '/admin/teams/many/keys', {})).json()) as { key: string }).key)
    expect(keys.size).toBe(20)
  })

  it.each([
    ['a past expiry', { expires_at: '2001-01-01T00:00:00Z' }, 'expires_at'],
    ['a non-date expiry', { expires_at: 'tomorrow' }, 'expires_at'],
    ['an unknown field', { scopes: ['all'] }, 'scopes'],
  ])('refuses %s with a 400', async (_label, body, param) => {
    await gw.admin('POST', '/admin/teams', { id: 'ml' })
    const res = await gw.admin('POST', '/admin/teams/ml/keys', body)
    expect(res.status).toBe(400)
    expect(((await res.json()) as Envelope).error.param).toBe(param)
  })

  it('sets and patches limits of a key; bad ones are a 400 that stores nothing', async () => {
    await gw.admin('POST', '/admin/teams', { id: 'keyed' })
    const bad = await gw.admin('POST', '/admin/teams/keyed/keys', { limits: { concurrent_requests: 1.5 } })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as Envelope).error.param).toBe('limits.concurrent_requests')
    expect(((await (await gw.admin('GET', '/admin/teams/keyed/keys')).json()) as { data: unknown[] }).data).toHaveLength(0)

    const created = (await (await gw.admin('POST', '/admin/teams/keyed/keys', { limits: { requests_per_minute: 1 } })).json()) as {
      id: string
      key: string
      limits: object
    }
    expect(created.limits).toEqual({ requests_per_minute: 1 })
    expect((await chat(gw, created.key)).status).toBe(200)
    const limited = await chat(gw, created.key)
    expect(limited.status).toBe(429)
    expect(((await limited.json()) as Envelope).error.message).toContain(`key ${created.id} of team 'keyed'`)

    const patched = await gw.admin('PATCH', `/admin/keys/${created.id}`, { limits: { requests_per_minute: null, tokens_per_day: 100_000 } })
    expect(await patched.json()).toMatchObject({ limits: { tokens_per_day: 100_000 } })
    expect((await chat(gw, created.key)).status).toBe(200)
    const badPatch = await gw.admin('PATCH', `/admin/keys/${created.id}`, { limits: { tokens_per_day: -1 } })
    expect(badPatch.status).toBe(400)
    expect(((await (await gw.admin('GET', `/admin/keys/${created.id}`)).json()) as { limits: object }).limits).toEqual({
      tokens_per_day: 100_000,
    })
  })

  it('refuses a key for a missing team with a 404', async () => {
    expect((await gw.admin('POST', '/admin/teams/ghost/keys', {})).status).toBe(404)
    expect((await gw.admin('GET', '/admin/teams/ghost/keys')).status).toBe(404)
    expect((await gw.admin('DELETE', '/admin/keys/key_doesnotexist00')).status).toBe(404)
  })

  it('an expired key is refused', async () => {
    let now = Date.parse('2026-06-01T00:00:00Z')
    await withGateway({ upstream, now: () => now }, async (clocked) => {
      await clocked.admin('POST', '/admin/teams', { id: 'ml' })
      const created = (await (await clocked.admin('POST', '/admin/teams/ml/keys', { expires_at: '2026-06-02T00:00:00Z' })).json()) as {
        key: string
      }
      expect((await chat(clocked, created.key)).status).toBe(200)
      now = Date.parse('2026-06-02T00:00:01Z')
      const res = await chat(clocked, created.key)
      expect(res.status).toBe(401)
      expect(((await res.json()) as Envelope).error.message).toContain('expired')
    })
  })
})

describe('several instances on one Redis', () => {
  it('share teams and keys; a revocation or team deletion on one takes effect at once on the other', async () => {
    await withGateway({ upstream, env: { REDIS_URL: redis.url } }, async (second) => {
      await gw.admin('POST', '/admin/teams', { id: 'shared' })
      const a = (await (await gw.admin('POST', '/admin/teams/shared/keys', {})).json()) as { id: string; key: string }
      const b = (await (await gw.admin('POST', '/admin/teams/shared/keys', {})).json()) as { id: string; key: string }
      expect((await chat(second, a.key)).status).toBe(200)
      expect((await second.admin('DELETE', `/admin/keys/${a.id}`)).status).toBe(204)
      expect((await chat(gw, a.key)).status).toBe(401)
      expect((await chat(second, a.key)).status).toBe(401)

      expect((await chat(gw, b.key)).status).toBe(200)
      expect((await second.admin('DELETE', '/admin/teams/shared')).status).toBe(204)
      expect((await chat(gw, b.key)).status).toBe(401)
    })
  })

  it('cache keys in each instance, yet a change made on another reaches it at once (pub/sub)', async () => {
    await withGateway({ upstream, env: { REDIS_URL: redis.url } }, async (second) => {
      await gw.admin('POST', '/admin/teams', { id: 'cached' })
      const k = (await (await gw.admin('POST', '/admin/teams/cached/keys', {})).json()) as { id: string; key: string }
      for (let i = 0; i < 3; i++) expect((await chat(gw, k.key)).status).toBe(200) // cached on gw now
      expect((await second.admin('PATCH', '/admin/teams/cached', { limits: { requests_per_minute: 0 } })).status).toBe(200)
      const limited = await chat(gw, k.key)
      expect(limited.status).toBe(429)
      expect((await second.admin('PATCH', '/admin/teams/cached', { limits: { requests_per_minute: null } })).status).toBe(200)
      expect((await chat(gw, k.key)).status).toBe(200)
      expect((await second.admin('DELETE', `/admin/keys/${k.id}`)).status).toBe(204)
      expect((await chat(gw, k.key)).status).toBe(401)
    })
  })

  it.each([
    ['open', 200, { status: 'degraded', store: 'redis', redis: 'down', failure_mode: 'open' }],
    ['closed', 503, { status: 'unavailable', store: 'redis', redis: 'down', failure_mode: 'closed' }],
  ])('/readyz reports Redis, and its loss in fail-%s mode', async (mode, status, body) => {
    const own = await startRedis()
    await withGateway({ upstream, env: { REDIS_URL: own.url, REDIS_FAILURE_MODE: mode } }, async (other) => {
      expect(await (await fetch(other.url + '/readyz')).json()).toEqual({
        status: 'ready',
        store: 'redis',
        redis: 'up',
        failure_mode: mode,
        usage_buffer: { waiting: 0, dropped: 0 },
        audit_buffer: { waiting: 0, dropped: 0 },
      })
      await own.stop()
      const res = await fetch(other.url + '/readyz')
      expect(res.status).toBe(status)
      expect(await res.json()).toMatchObject(body)
      expect(await fetch(other.url + '/healthz').then((r) => r.status)).toBe(200)
    })
  })
})

describe('admin authentication', () => {
  it.each([
    ['no token', undefined],
    ['a wrong token', 'Bearer wrong-token-wrong-token-wrong'],
    ['the token with one character changed', `Bearer ${ADMIN_TOKEN.slice(0, -1)}x`],
    ['the token without Bearer', ADMIN_TOKEN],
  ])('%s → 401', async (_label, authorization) => {
    const res = await fetch(gw.url + '/admin/teams', { headers: authorization ? { authorization } : {} })
    expect(res.status).toBe(401)
    expect(((await res.json()) as Envelope).error.code).toBe('invalid_admin_token')
  })

  it('a client key is not an admin token', async () => {
    const { key } = await gw.createKey('ml')
    expect((await fetch(gw.url + '/admin/teams', { headers: { authorization: `Bearer ${key}` } })).status).toBe(401)
  })

  it('without ADMIN_TOKEN the admin routes do not exist', async () => {
    await withGateway({ upstream, env: { ADMIN_TOKEN: undefined } }, async (other) => {
      const res = await fetch(other.url + '/admin/teams', { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      expect(res.status).toBe(404)
    })
  })
})

describe('key rotation and last use', () => {
  it('a rotated key keeps working for the grace period, then fails; the new one works throughout', async () => {
    let now = Date.parse('2026-07-01T00:00:00Z')
    await withGateway({ upstream, env: { REDIS_URL: redis.url }, now: () => now }, async (clocked) => {
      await clocked.admin('POST', '/admin/teams', { id: 'rotating' })
      const old = (await (
        await clocked.admin('POST', '/admin/teams/rotating/keys', { name: 'ci', limits: { concurrent_requests: 3 } })
      ).json()) as { id: string; key: string }
      const res = await clocked.admin('POST', `/admin/keys/${old.id}/rotate`, { grace_seconds: 3600 })
      expect(res.status).toBe(201)
      const fresh = (await res.json()) as {
        id: string
        key: string
        name: string
        limits: object
        replaces: { id: string; expires_at: string; replaced_by: string }
      }
      expect(fresh).toMatchObject({ name: 'ci', limits: { concurrent_requests: 3 } })
      expect(fresh.key).not.toBe(old.key)
      expect(fresh.replaces).toMatchObject({ id: old.id, expires_at: '2026-07-01T01:00:00.000Z', replaced_by: fresh.id })

      expect((await chat(clocked, old.key)).status).toBe(200)
      expect((await chat(clocked, fresh.key)).status).toBe(200)
      now += 3600 * 1000 + 1
      expect((await chat(clocked, old.key)).status).toBe(401)
      expect((await chat(clocked, fresh.key)).status).toBe(200)

      expect((await clocked.admin('POST', `/admin/keys/${old.id}/rotate`, {})).status).toBe(409)
      expect((await clocked.admin('POST', `/admin/keys/${fresh.id}/rotate`, { grace_seconds: -1 })).status).toBe(400)
    })
  })

  it('the default grace period comes from the config', async () => {
    const now = Date.parse('2026-07-01T00:00:00Z')
    await withGateway(
      { upstream, now: () => now, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': 'keys:\n  rotation_grace_seconds: 60\n' } },
      async (other) => {
        await other.admin('POST', '/admin/teams', { id: 'graceful' })
        const old = (await (await other.admin('POST', '/admin/teams/graceful/keys', {})).json()) as { id: string }
        const fresh = (await (await other.admin('POST', `/admin/keys/${old.id}/rotate`, {})).json()) as { replaces: { expires_at: string } }
        expect(fresh.replaces.expires_at).toBe('2026-07-01T00:01:00.000Z')
      },
    )
  })

  it('last_used_at is written in batches, not on every request', async () => {
    await withGateway({ upstream, env: { REDIS_URL: redis.url } }, async (other) => {
      const { id, key } = await other.createKey('touched')
      const before = await (await other.admin('GET', `/admin/keys/${id}`)).json()
      expect(before).toMatchObject({ last_used_at: null })
      for (let i = 0; i < 5; i++) expect((await chat(other, key)).status).toBe(200)
      // Not yet written: the batch goes at its interval or at shutdown.
      expect(await (await gw.admin('GET', `/admin/keys/${id}`)).json()).toMatchObject({ last_used_at: null })
      await other.app.close()
      const after = (await (await gw.admin('GET', `/admin/keys/${id}`)).json()) as { last_used_at: string }
      expect(Date.parse(after.last_used_at)).toBeGreaterThan(Date.now() - 60_000)
    })
  })
})
