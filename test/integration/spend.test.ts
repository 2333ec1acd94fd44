import { Redis } from 'ioredis'
import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { startGateway, type Envelope, type TestGateway, useGatewayOn, useUpstreamAndRedis } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Spend: a model's price in the config makes every request's cost, from the upstream's own usage
 * figures, recorded to the micro-dollar with its usage, in the audit stream and in every report.
 */

const PRICED = 'meta/llama-3.1-8b-instruct'
const FREE = 'minimaxai/minimax-m2.1'
const IN_MICROS = 300_000 // $0.30 per million prompt tokens
const OUT_MICROS = 1_200_000 // $1.20 per million completion tokens
const CONFIG = `
models:
  ${PRICED}:
    price: { input_per_million: 0.3, output_per_million: 1.2 }
`

const parts = useUpstreamAndRedis()

/** What the gateway should charge for one answer's usage: rounded up to the micro-dollar. */
const micros = (u: { prompt_tokens: number; completion_tokens: number }) =>
  Math.ceil((u.prompt_tokens * IN_MICROS + u.completion_tokens * OUT_MICROS) / 1e6)

type Row = { model?: string; requests: number; cost_usd: number; total_tokens: number }
const rows = async (gw: TestGateway, query: string) =>
  ((await (await gw.admin('GET', `/admin/usage?${query}`)).json()) as { data: Row[] }).data

for (const store of ['embedded', 'redis'] as const) {
  describe(`spend (${store} store)`, () => {
    const on = useGatewayOn(store, parts, CONFIG)

    it("records each request's cost from the upstream's usage × the model's price, to the micro-dollar", async () => {
      const team = `spend-${store}`
      const { key } = await on.gw.createKey(team)
      const client = new OpenAI({ baseURL: `${on.gw.url}/v1`, apiKey: key, maxRetries: 0 })
      let expected = 0
      let pricedTokens = 0
      for (let i = 0; i < 6; i++) {
        const content = `question ${i} ${'word '.repeat(i * 7)}`
        if (i % 2 === 0) {
          const done = await client.chat.completions.create({ model: PRICED, messages: [{ role: 'user', content }] })
          expected += micros(done.usage!)
          pricedTokens += done.usage!.total_tokens
        } else {
          const stream = await client.chat.completions.create({
            model: PRICED,
            messages: [{ role: 'user', content }],
            stream: true,
            stream_options: { include_usage: true },
          })
          for await (const chunk of stream) {
            if (chunk.usage) {
              expected += micros(chunk.usage)
              pricedTokens += chunk.usage.total_tokens
            }
          }
        }
      }
      expect(expected).toBeGreaterThan(0)
      await client.chat.completions.create({ model: FREE, messages: [{ role: 'user', content: 'free' }] })

      await waitFor(async () => (await rows(on.gw, `team=${team}`))[0]?.requests === 7, 'every request recorded')
      const byModel = await rows(on.gw, `team=${team}&group_by=model`)
      expect(byModel).toEqual([
        expect.objectContaining({ model: PRICED, requests: 6, total_tokens: pricedTokens, cost_usd: expected / 1e6 }),
        expect.objectContaining({ model: FREE, requests: 1, cost_usd: 0 }),
      ])
      const csv = await (await on.gw.admin('GET', `/admin/usage?team=${team}&format=csv`)).text()
      expect(csv.split('\n')[0]).toBe('team,requests,prompt_tokens,completion_tokens,total_tokens,estimated_requests,cost_usd')
      expect(csv.split('\n')[1]!.split(',').at(-1)).toBe(String(expected / 1e6))
      const own = (await (await fetch(`${on.gw.url}/v1/usage`, { headers: { authorization: `Bearer ${key}` } })).json()) as {
        today: { cost_usd: number }
      }
      expect(own.today.cost_usd).toBe(expected / 1e6)

      if (store === 'redis') {
        const client = new Redis(parts.redis.url)
        try {
          const audited = async () => {
            const entries = (await client.xrange('tg:audit', '-', '+')) as [string, string[]][]
            const mine = entries.map(([, f]) => f).filter((f) => f[f.indexOf('team') + 1] === team)
            return {
              entries: mine.length,
              micros: mine.reduce((sum, f) => sum + Math.round(Number(f[f.indexOf('cost_usd') + 1]) * 1e6), 0),
            }
          }
          await waitFor(async () => (await audited()).entries === 7, 'every audit entry')
          expect((await audited()).micros).toBe(expected)
        } finally {
          client.disconnect()
        }
      }
    })
  })
}

describe('prices in the config', () => {
  it('refuses a negative, non-numeric or over-precise price, naming its path', async () => {
    for (const [price, problem] of [
      ['{ input_per_million: -1, output_per_million: 1 }', 'price.input_per_million: must not be negative'],
      ['{ input_per_million: "1", output_per_million: 1 }', 'price.input_per_million: must be a number of US dollars'],
      ['{ input_per_million: 1, output_per_million: 0.0000001 }', 'price.output_per_million: must have at most six decimals'],
      ['{ input_per_million: 1, output_per_million: 1, currency: EUR }', 'price.currency: unknown field'],
    ]) {
      const yaml = `models:\n  ${PRICED}:\n    price: ${price}\n`
      await expect(startGateway({ env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': yaml } })).rejects.toThrow(problem)
    }
  })
})

describe('budgets', () => {
  // Only completion tokens are priced ($100 per million: 100 micro-dollars a token), and max_tokens
  // bounds them, so each request's real cost is known to be within what it reserves.
  const BUDGET_CONFIG = `
models:
  ${PRICED}:
    price: { input_per_million: 0, output_per_million: 100 }
`
  const MAX_TOKENS = 32

  it('holds a team to $0.01 a day across three instances: 40 at once, then until insufficient_quota; the report is the sum to the micro-dollar', async () => {
    const gws: TestGateway[] = []
    for (let i = 0; i < 3; i++) {
      gws.push(
        await startGateway({
          upstream: parts.upstream,
          env: { TOLLGATE_CONFIG: '/c.yaml', REDIS_URL: parts.redis.url },
          files: { '/c.yaml': BUDGET_CONFIG },
        }),
      )
    }
    try {
      const team = 'budget'
      expect((await gws[0]!.admin('POST', '/admin/teams', { id: team, limits: { usd_per_day: 0.01 } })).status).toBe(201)
      const key = ((await (await gws[0]!.admin('POST', `/admin/teams/${team}/keys`, {})).json()) as { key: string }).key
      const call = (i: number) =>
        fetch(`${gws[i % 3]!.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: PRICED, messages: [{ role: 'user', content: `hi ${i}` }], max_tokens: MAX_TOKENS }),
        })
      let spent = 0
      const charge = async (res: Response) => {
        const body = (await res.json()) as { usage?: { completion_tokens: number } } & Envelope
        if (res.status === 200) {
          expect(body.usage!.completion_tokens).toBeLessThanOrEqual(MAX_TOKENS)
          spent += body.usage!.completion_tokens * 100
        }
        return body
      }
      const first = await Promise.all(Array.from({ length: 40 }, (_, i) => call(i)))
      const statuses = first.map((r) => r.status)
      for (const res of first) await charge(res)
      expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(0)
      expect(statuses.every((s) => s === 200 || s === 429)).toBe(true)
      expect(spent).toBeLessThanOrEqual(10_000)

      // One at a time until the budget cannot hold another request's worst case.
      let last: Envelope | null = null
      let lastRes: Response | null = null
      for (let i = 0; i < 40 && last === null; i++) {
        const res = await call(i)
        const body = await charge(res)
        if (res.status === 429 && body.error.code === 'insufficient_quota') [last, lastRes] = [body, res]
        else {
          expect(res.status).toBe(200)
          expect(res.headers.get('x-ratelimit-limit-usd')).toBe('0.01')
          expect(Number(res.headers.get('x-ratelimit-remaining-usd'))).toBeLessThan(0.01)
        }
      }
      expect(last).not.toBeNull()
      expect(last!.error.type).toBe('insufficient_quota')
      expect(last!.error.message).toContain(`the daily budget (usd_per_day) of team '${team}': Limit $0.01`)
      expect(last!.error.message).toMatch(/It resets at \d{4}-\d{2}-\d{2}T00:00:00\.000Z\./)
      expect(lastRes!.headers.get('x-should-retry')).toBe('false')
      expect(spent).toBeLessThanOrEqual(10_000)
      expect(spent + MAX_TOKENS * 100).toBeGreaterThan(10_000)

      await waitFor(async () => {
        const [row] = await rows(gws[1]!, `team=${team}`)
        return row !== undefined && Math.round(row.cost_usd * 1e6) === spent
      }, 'the report to hold every answer')
      expect((await rows(gws[2]!, `team=${team}`))[0]!.cost_usd).toBe(spent / 1e6)
      const quota = (await (await gws[0]!.admin('GET', `/admin/teams/${team}`)).json()) as {
        quota: { team: { usd_per_day: { limit: number; used: number; remaining: number } } }
      }
      expect(quota.quota.team.usd_per_day).toMatchObject({ limit: 0.01, used: spent / 1e6, remaining: (10_000 - spent) / 1e6 })
    } finally {
      for (const gw of gws) await gw.close()
    }
  })

  it('refuses a negative, non-numeric or over-precise budget with a 400 naming the field, and stores nothing', async () => {
    const gw = await startGateway({ upstream: parts.upstream })
    try {
      for (const [limits, param] of [
        [{ usd_per_day: -1 }, 'limits.usd_per_day'],
        [{ usd_per_month: 'ten' }, 'limits.usd_per_month'],
        [{ usd_per_day: 0.0000001 }, 'limits.usd_per_day'],
      ] as const) {
        const res = await gw.admin('POST', '/admin/teams', { id: 'bad-budget', limits })
        expect(res.status).toBe(400)
        expect(((await res.json()) as Envelope).error).toMatchObject({ param, code: 'invalid_value' })
        expect((await gw.admin('GET', '/admin/teams/bad-budget')).status).toBe(404)
      }
    } finally {
      await gw.close()
    }
  })
})
