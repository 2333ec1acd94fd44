import { Redis } from 'ioredis'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type Envelope, type TestGateway, useUpstreamAndRedis } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/**
 * End users: the `safety_identifier` (or older `user`) a request names is recorded with its usage
 * and audit entry, reported by, and held to the team's end_user_limits on its own, exactly, across
 * instances; the body goes upstream as the client sent it.
 */

const MODEL = 'meta/llama-3.1-8b-instruct'

const parts = useUpstreamAndRedis()

type Who = { user?: unknown; safety_identifier?: unknown }
const chat = (gw: TestGateway, key: string, who: Who) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], ...who }),
  })

async function usage(gw: TestGateway, query: string): Promise<{ end_user?: string; requests: number }[]> {
  return ((await (await gw.admin('GET', `/admin/usage?${query}`)).json()) as { data: { end_user?: string; requests: number }[] }).data
}

for (const store of ['embedded', 'redis'] as const) {
  describe(`end users (${store} store${store === 'redis' ? ', two instances' : ''})`, () => {
    let gws: TestGateway[]
    beforeAll(async () => {
      const env = store === 'redis' ? { REDIS_URL: parts.redis.url } : {}
      gws = [await startGateway({ upstream: parts.upstream, env })]
      if (store === 'redis') gws.push(await startGateway({ upstream: parts.upstream, env }))
    })
    afterAll(async () => {
      for (const gw of gws) await gw.close()
    })
    /** The i-th request's gateway: they take turns. */
    const at = (i: number) => gws[i % gws.length]!

    it("holds each end user to the team's end_user_limits alone, while the others go on", async () => {
      const team = `eu-${store}`
      const gw = gws[0]!
      expect((await gw.admin('POST', '/admin/teams', { id: team, end_user_limits: { requests_per_minute: 3 } })).status).toBe(201)
      const key = ((await (await gw.admin('POST', `/admin/teams/${team}/keys`, {})).json()) as { key: string }).key

      let n = 0
      const statuses = async (who: Who, count: number) => {
        const out: number[] = []
        for (let i = 0; i < count; i++) out.push((await chat(at(n++), key, who)).status)
        return out
      }
      expect(await statuses({ user: 'alice' }, 3)).toEqual([200, 200, 200])
      const refused = await chat(at(n++), key, { user: 'alice' })
      expect(refused.status).toBe(429)
      const body = (await refused.json()) as Envelope
      expect(body.error).toMatchObject({ type: 'requests', code: 'rate_limit_exceeded' })
      expect(body.error.message).toContain(`end user "alice" of team '${team}'`)
      // Bob has his own three. When both fields are given, the newer one names the end user: the
      // first of these counts against bob, not alice (who has none left), and the body goes
      // upstream as sent, where the fake NVIDIA's strict schema refuses `safety_identifier` (422);
      // the second finds bob's three used.
      expect(await statuses({ user: 'bob' }, 2)).toEqual([200, 200])
      expect(await statuses({ safety_identifier: 'bob', user: 'alice' }, 2)).toEqual([422, 429])
      // A request naming no end user answers to the team's own limits only (none here).
      expect(await statuses({}, 5)).toEqual([200, 200, 200, 200, 200])
      expect(await statuses({ user: '' }, 1)).toEqual([200])

      // Usage, by end user ('' for none), to the request.
      await waitFor(async () => (await usage(gw, `team=${team}`))[0]?.requests === 3 + 3 + 6, 'every answer recorded')
      expect(await usage(gw, `team=${team}&group_by=end_user`)).toEqual([
        expect.objectContaining({ team, end_user: '', requests: 6 }),
        expect.objectContaining({ team, end_user: 'alice', requests: 3 }),
        expect.objectContaining({ team, end_user: 'bob', requests: 3 }),
      ])
      expect(await usage(gw, `team=${team}&end_user=alice&group_by=team`)).toEqual([expect.objectContaining({ team, requests: 3 })])
      const csv = await (await gw.admin('GET', `/admin/usage?team=${team}&group_by=end_user,model&format=csv`)).text()
      expect(csv.split('\n')[0]).toBe(
        'team,model,end_user,requests,prompt_tokens,completion_tokens,total_tokens,estimated_requests,cost_usd',
      )
      expect(csv).toContain(`${team},${MODEL},alice,3,`)
    })

    it('keeps an end user with tabs, commas and non-ASCII as the client wrote it', async () => {
      const team = `eu-odd-${store}`
      const gw = gws[0]!
      await gw.admin('POST', '/admin/teams', { id: team })
      const key = ((await (await gw.admin('POST', `/admin/teams/${team}/keys`, {})).json()) as { key: string }).key
      const odd = 'ünïcode\tuser, "quoted"/100%'
      expect((await chat(gw, key, { user: odd })).status).toBe(200)
      await waitFor(async () => (await usage(gw, `team=${team}`))[0]?.requests === 1, 'the answer recorded')
      expect(await usage(gw, `team=${team}&group_by=end_user`)).toEqual([expect.objectContaining({ end_user: odd, requests: 1 })])
      // The body went upstream as the client sent it: the end user neither added, hashed nor stripped.
      expect(parts.upstream.requests.at(-1)!.body).toMatchObject({ user: odd })
      expect((await chat(gw, key, {})).status).toBe(200)
      expect(parts.upstream.requests.at(-1)!.body).not.toHaveProperty('user')
    })

    it('refuses an end user that is not a string, or too long, with a 400 naming the field', async () => {
      const gw = gws[0]!
      const key = (await gw.createKey(`eu-bad-${store}`)).key
      const before = parts.upstream.requests.length
      for (const [who, param, code] of [
        [{ user: 42 }, 'user', 'invalid_type'],
        [{ safety_identifier: ['a'] }, 'safety_identifier', 'invalid_type'],
        [{ user: 'x'.repeat(257) }, 'user', 'invalid_value'],
      ] as const) {
        const res = await chat(gw, key, who)
        expect(res.status).toBe(400)
        expect(((await res.json()) as Envelope).error).toMatchObject({ type: 'invalid_request_error', param, code })
      }
      expect(parts.upstream.requests.length).toBe(before)
    })

    it('refuses end_user_limits that are not limits, naming the field, and stores nothing', async () => {
      const gw = gws[0]!
      const res = await gw.admin('POST', '/admin/teams', { id: `eu-badlimits-${store}`, end_user_limits: { requests_per_minute: -1 } })
      expect(res.status).toBe(400)
      expect(((await res.json()) as Envelope).error.param).toBe('end_user_limits.requests_per_minute')
      expect((await gw.admin('GET', `/admin/teams/eu-badlimits-${store}`)).status).toBe(404)
    })

    if (store === 'redis') {
      it('writes the end user into the audit stream', async () => {
        const gw = gws[0]!
        const key = (await gw.createKey('eu-audit')).key
        expect((await chat(gw, key, { user: 'carol' })).status).toBe(200)
        const client = new Redis(parts.redis.url)
        try {
          await waitFor(async () => {
            const entries = (await client.xrange('tg:audit', '-', '+')) as [string, string[]][]
            return entries.some(([, f]) => f[f.indexOf('team') + 1] === 'eu-audit' && f[f.indexOf('end_user') + 1] === 'carol')
          }, 'the audit entry')
        } finally {
          client.disconnect()
        }
      })
    }
  })
}

describe('end users through the OpenAI SDK', () => {
  it("raises an end user's limit as RateLimitError, the user field passed as the SDK sends it", async () => {
    const gw = await startGateway({ upstream: parts.upstream })
    try {
      await gw.admin('POST', '/admin/teams', { id: 'eu-sdk', end_user_limits: { requests_per_minute: 1 } })
      const key = ((await (await gw.admin('POST', '/admin/teams/eu-sdk/keys', {})).json()) as { key: string }).key
      const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 })
      const ask = (user: string) => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], user })
      expect((await ask('dave')).model).toBe(MODEL)
      await expect(ask('dave')).rejects.toBeInstanceOf(OpenAI.RateLimitError)
      expect((await ask('erin')).model).toBe(MODEL)
    } finally {
      await gw.close()
    }
  })
})
