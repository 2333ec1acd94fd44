import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Redis } from 'ioredis'
import { MemoryStore } from '../../src/store/memory.js'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { ADMIN_TOKEN, startGateway, withGateway, type Envelope, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'

/**
 * The web console's HTTP side: its security headers, sign-in (and its rate limit), sessions that
 * expire and end, CSRF on every change, a client key's session kept out of the admin API, and the
 * admin routes the console's pages read (teams with their quota, upstreams, usage by hour).
 */

const code = async (res: Response) => ((await res.json()) as Envelope).error.code

/** Signs in; the session's cookie header and CSRF token. */
async function signIn(url: string, token: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/console/api/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ token }),
  })
  const setCookie = res.headers.get('set-cookie') ?? ''
  const body = (await res.json()) as { role: string; team: string | null; csrf_token: string; error?: { code: string } }
  return { res, setCookie, cookie: setCookie.split(';')[0]!, csrf: body.csrf_token, body }
}

const call = (url: string, method: string, path: string, headers: Record<string, string>, body?: unknown) =>
  fetch(url + path, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  })

describe('the console', () => {
  let upstream: FakeUpstream
  let gw: TestGateway
  let clock = Date.now()

  beforeAll(async () => {
    upstream = await new FakeUpstream(['nvapi-console-test-key-aaaa', 'nvapi-console-test-key-bbbb']).start()
    gw = await startGateway({ upstream, now: () => clock })
  })
  afterAll(async () => {
    await gw.close()
    await upstream.close()
  })

  it('answers every console response with the security headers (no inline script or style, never framed)', async () => {
    for (const path of [
      '/console/',
      '/console/assets/app.js',
      '/console/assets/app.css',
      '/console/api/session',
      '/console/no-such-page',
    ]) {
      const res = await fetch(gw.url + path)
      const csp = res.headers.get('content-security-policy') ?? ''
      expect(csp, path).toContain("script-src 'self'")
      expect(csp, path).toContain("frame-ancestors 'none'")
      expect(csp, path).toContain("default-src 'none'")
      expect(csp, path).not.toMatch(/unsafe-inline|unsafe-eval/)
      expect(res.headers.get('x-content-type-options'), path).toBe('nosniff')
      expect(res.headers.get('x-frame-options'), path).toBe('DENY')
    }
    const page = await fetch(`${gw.url}/console/`)
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    const html = await page.text()
    // The page loads only its own script and stylesheet: no inline script, no CDN.
    expect(html).toContain('<script type="module" src="assets/app.js"></script>')
    expect(html).not.toMatch(/<script>|https?:\/\//)
    expect((await fetch(`${gw.url}/console`, { redirect: 'manual' })).headers.get('location')).toBe('/console/')
  })

  it('exchanges the admin token for an HttpOnly, SameSite=Strict, expiring cookie; a wrong one for nothing', async () => {
    const wrong = await signIn(gw.url, 'not-the-token')
    expect(wrong.res.status).toBe(401)
    expect(wrong.body.error?.code).toBe('invalid_sign_in')
    expect(wrong.setCookie).toBe('')

    const { res, setCookie, body } = await signIn(gw.url, ADMIN_TOKEN)
    expect(res.status).toBe(200)
    expect(body).toMatchObject({ object: 'console.session', role: 'admin', team: null })
    expect(setCookie).toMatch(/^tollgate_session=[A-Za-z0-9_-]{43}; Max-Age=28800; Path=\/; HttpOnly; SameSite=Strict$/)
    expect(JSON.stringify(body)).not.toContain(ADMIN_TOKEN)
  })

  it('marks the cookie Secure when the request came over TLS (a proxy trusted by address says so)', async () => {
    // (Fastify believes X-Forwarded-Proto only from proxies named by address, not by a hop count.)
    await withGateway({ upstream, env: { TRUST_PROXY: '127.0.0.1' } }, async (tls) => {
      const { setCookie } = await signIn(tls.url, ADMIN_TOKEN, { 'x-forwarded-proto': 'https' })
      expect(setCookie).toContain('; Secure')
      expect((await signIn(tls.url, ADMIN_TOKEN)).setCookie).not.toContain('Secure')
    })
  })

  it('refuses a change without the session CSRF token, and changes nothing', async () => {
    const { cookie, csrf } = await signIn(gw.url, ADMIN_TOKEN)
    const team = { id: 'csrf-team' }
    const none = await call(gw.url, 'POST', '/admin/teams', { cookie }, team)
    expect(none.status).toBe(403)
    expect(await code(none)).toBe('csrf_token_invalid')
    const wrong = await call(gw.url, 'POST', '/admin/teams', { cookie, 'x-csrf-token': 'x'.repeat(32) }, team)
    expect(wrong.status).toBe(403)
    expect((await gw.admin('GET', '/admin/teams/csrf-team')).status).toBe(404)
    // Reading needs no token; signing out does.
    expect((await call(gw.url, 'GET', '/admin/teams', { cookie })).status).toBe(200)
    expect((await call(gw.url, 'DELETE', '/console/api/session', { cookie })).status).toBe(403)
    expect((await call(gw.url, 'GET', '/console/api/session', { cookie })).status).toBe(200)

    const right = await call(gw.url, 'POST', '/admin/teams', { cookie, 'x-csrf-token': csrf }, team)
    expect(right.status).toBe(201)
    const out = await call(gw.url, 'DELETE', '/console/api/session', { cookie, 'x-csrf-token': csrf })
    expect(out.status).toBe(204)
    expect(out.headers.get('set-cookie')).toMatch(/^tollgate_session=; Max-Age=0;/)
    const after = await call(gw.url, 'GET', '/admin/teams', { cookie })
    expect(after.status).toBe(401)
    expect(await code(after)).toBe('invalid_session')
  })

  it('ends a session when it expires', async () => {
    const { cookie, csrf } = await signIn(gw.url, ADMIN_TOKEN)
    expect((await call(gw.url, 'GET', '/admin/teams', { cookie })).status).toBe(200)
    clock += 8 * 3_600_000 + 1_000
    try {
      const expired = await call(gw.url, 'POST', '/admin/teams', { cookie, 'x-csrf-token': csrf }, { id: 'late-team' })
      expect(expired.status).toBe(401)
      expect(await code(expired)).toBe('invalid_session')
      expect((await gw.admin('GET', '/admin/teams/late-team')).status).toBe(404)
    } finally {
      clock = Date.now()
    }
  })

  it("keeps a client key's session to its own team, read-only, for as long as the key lives", async () => {
    const { id: keyId, key } = await gw.createKey('viewers')
    await gw.createKey('others')
    const { res, cookie, csrf, body } = await signIn(gw.url, key)
    expect(res.status).toBe(200)
    expect(body).toMatchObject({ role: 'team', team: 'viewers', key_id: keyId })

    const view = (await (await call(gw.url, 'GET', '/console/api/team', { cookie })).json()) as {
      team: { id: string }
      key: { id: string }
    }
    expect(view).toMatchObject({ object: 'console.team', team: { id: 'viewers' }, key: { id: keyId } })
    expect(JSON.stringify(view)).not.toContain(key)
    expect((await call(gw.url, 'GET', '/console/api/usage?group_by=day', { cookie })).status).toBe(200)
    const other = await call(gw.url, 'GET', '/console/api/usage?team=others', { cookie })
    expect(other.status).toBe(403)
    expect(await code(other)).toBe('admin_only')

    for (const [method, path, payload] of [
      ['GET', '/admin/teams', undefined],
      ['GET', '/admin/usage', undefined],
      ['POST', '/admin/teams', { id: 'sneaky' }],
      ['DELETE', `/admin/keys/${keyId}`, undefined],
    ] as const) {
      const refused = await call(gw.url, method, path, { cookie, 'x-csrf-token': csrf }, payload)
      expect(refused.status, `${method} ${path}`).toBe(403)
      expect(await code(refused)).toBe('admin_only')
    }
    expect((await gw.admin('GET', '/admin/teams/sneaky')).status).toBe(404)
    expect(((await (await gw.admin('GET', `/admin/keys/${keyId}`)).json()) as { revoked_at: string | null }).revoked_at).toBeNull()

    // Revoked, the key's session ends with it.
    expect((await gw.admin('DELETE', `/admin/keys/${keyId}`)).status).toBe(204)
    const ended = await call(gw.url, 'GET', '/console/api/team', { cookie })
    expect(ended.status).toBe(401)
    expect(await code(ended)).toBe('invalid_session')
    expect((await signIn(gw.url, key)).res.status).toBe(401)
  })

  it('lists every team with its quota in one answer, and the upstream keys by hint and state', async () => {
    await gw.admin('POST', '/admin/teams', { id: 'bars', limits: { requests_per_minute: 10 } })
    const teams = (await (await gw.admin('GET', '/admin/teams?include=quota')).json()) as { data: { id: string; quota: unknown }[] }
    expect(teams.data.find((t) => t.id === 'bars')?.quota).toEqual({
      team: { requests_per_minute: { limit: 10, used: 0, remaining: 10 } },
      models: {},
    })
    const bad = await gw.admin('GET', '/admin/teams?include=everything')
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as Envelope).error.param).toBe('include')

    // One key draws a 429: it cools down, and the error is listed with it.
    upstream.limitedKeys.set('nvapi-console-test-key-aaaa', '30')
    const { key } = await gw.createKey('bars')
    for (let i = 0; i < 2; i++) {
      await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'minimaxai/minimax-m2.1', messages: [{ role: 'user', content: 'hi' }] }),
      }).then((r) => r.text())
    }
    upstream.limitedKeys.clear()
    const res = await gw.admin('GET', '/admin/upstreams')
    const text = await res.clone().text()
    for (const k of upstream.apiKeys) expect(text).not.toContain(k)
    const list = (await res.json()) as {
      data: { name: string; keys: { hint: string; state: string; recent_errors: { status: number }[] }[] }[]
    }
    expect(list.data).toHaveLength(1)
    expect(list.data[0]!.keys.map((k) => [k.hint, k.state])).toEqual([
      ['nvapi-…aaaa', 'cooling'],
      ['nvapi-…bbbb', 'available'],
    ])
    expect(list.data[0]!.keys[0]!.recent_errors[0]).toMatchObject({ status: 429, model: 'minimaxai/minimax-m2.1' })
    expect(list.data[0]!.keys[1]!.recent_errors).toEqual([])
  })

  it('reports usage by hour, at most 31 days at a time', async () => {
    const res = await gw.admin('GET', '/admin/usage?from=2026-01-01&to=2026-02-15&group_by=hour')
    expect(res.status).toBe(400)
    const { error } = (await res.json()) as Envelope
    expect(error).toMatchObject({ param: 'from', code: 'invalid_value' })
    expect(error.message).toContain('at most 31 days at a time by hour')
  })
})

describe('console sign-in', () => {
  let upstream: FakeUpstream
  beforeAll(async () => {
    upstream = await new FakeUpstream().start()
  })
  afterAll(async () => {
    await upstream.close()
  })

  it('is rate-limited like other failed authentications: past the limit even the right token waits', async () => {
    const files = { '/c.yaml': 'quotas:\n  auth_failures_per_minute: 3\n' }
    await withGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files }, async (gw) => {
      for (let i = 0; i < 3; i++) expect((await signIn(gw.url, `wrong-${i}`)).res.status).toBe(401)
      const locked = await signIn(gw.url, ADMIN_TOKEN)
      expect(locked.res.status).toBe(429)
      expect(locked.body.error?.code).toBe('auth_rate_limited')
      expect(locked.setCookie).toBe('')
    })
  })

  it('without ADMIN_TOKEN, admits client keys only (the admin console is off, as the admin API is)', async () => {
    // Two gateways on one store: one with an admin token makes the key, one without is signed in to.
    const store = new MemoryStore()
    await withGateway({ upstream, store }, async (withAdmin) => {
      const { key } = await withAdmin.createKey('solo')
      await withGateway({ upstream, store, env: { ADMIN_TOKEN: '' } }, async (gw) => {
        const refused = await signIn(gw.url, ADMIN_TOKEN)
        expect(refused.res.status).toBe(401)
        expect(refused.body.error?.code).toBe('invalid_sign_in')
        expect((await fetch(`${gw.url}/admin/teams`)).status).toBe(404)
        const { res, body, cookie } = await signIn(gw.url, key)
        expect(res.status).toBe(200)
        expect(body).toMatchObject({ role: 'team', team: 'solo' })
        expect((await call(gw.url, 'GET', '/console/api/team', { cookie })).status).toBe(200)
      })
    })
  })
})

describe('console sessions on Redis', () => {
  let upstream: FakeUpstream
  let redis: RedisServer
  beforeAll(async () => {
    upstream = await new FakeUpstream().start()
    redis = await startRedis()
  })
  afterAll(async () => {
    await redis.stop()
    await upstream.close()
  })

  it('hold on every instance, end on all at sign-out, and end when the admin token changes', async () => {
    const env = { REDIS_URL: redis.url }
    const newToken = 'a-new-admin-token-fedcba9876543210'
    await withGateway({ upstream, env }, async (a) => {
      await withGateway({ upstream, env }, async (b) => {
        await withGateway({ upstream, env: { ...env, ADMIN_TOKEN: newToken } }, async (rotated) => {
          const { cookie, csrf } = await signIn(a.url, ADMIN_TOKEN)
          // The session signed in on one instance opens the others; its id is not what Redis holds.
          expect((await call(b.url, 'GET', '/admin/teams', { cookie })).status).toBe(200)
          const id = cookie.split('=')[1]!
          const client = new Redis(redis.url)
          const stored = await client.keys('tg:session:*')
          await client.quit()
          expect(stored).toHaveLength(1)
          expect(stored[0]).not.toContain(id)
          // An instance with another admin token does not take it.
          const other = await call(rotated.url, 'GET', '/admin/teams', { cookie })
          expect(other.status).toBe(401)
          expect(await code(other)).toBe('invalid_session')
          // Signed out on b, it is gone on a too.
          expect((await call(b.url, 'DELETE', '/console/api/session', { cookie, 'x-csrf-token': csrf })).status).toBe(204)
          expect((await call(a.url, 'GET', '/admin/teams', { cookie })).status).toBe(401)
        })
      })
    })
  })
})
