import { Redis } from 'ioredis'
import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { startGateway, type TestGateway, useGatewayOn, useUpstreamAndRedis } from '../helpers/gateway.js'
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
