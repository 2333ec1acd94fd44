import { createHmac } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway, useUpstreamAndRedis } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Webhook alerts: crossing 50, 80 and 100 % of a budget, however many instances see it, sends each
 * alert once, signed with HMAC-SHA256 of its raw body, retried until the receiver takes it.
 */

const PRICED = 'meta/llama-3.1-8b-instruct'
const SECRET = 'test-alert-secret-0123456789'

const parts = useUpstreamAndRedis()

/** A real HTTP receiver: keeps every delivery it accepts (signature checked), refusing the first `failFirst`. */
class Receiver {
  readonly accepted: Record<string, unknown>[] = []
  attempts = 0
  badSignatures = 0
  failFirst = 0
  private server!: Server
  url = ''

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        this.attempts++
        const raw = Buffer.concat(chunks)
        const expected = `sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`
        if (req.headers['x-tollgate-signature'] !== expected) {
          this.badSignatures++
          return res.writeHead(401).end()
        }
        if (this.failFirst > 0) {
          this.failFirst--
          return res.writeHead(500).end()
        }
        this.accepted.push(JSON.parse(raw.toString('utf8')) as Record<string, unknown>)
        res.writeHead(204).end()
      })
    })
    this.server.listen(0, '127.0.0.1')
    await once(this.server, 'listening')
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`
    return this
  }

  async close(): Promise<void> {
    this.server.close()
    await once(this.server, 'close')
  }
}

const config = (receiver: Receiver) => `
models:
  ${PRICED}:
    price: { input_per_million: 0, output_per_million: 100 }
alerts:
  webhook_url: ${receiver.url}
  secret_env: TEST_ALERT_SECRET
  thresholds: [0.5, 0.8, 1.0]
`

for (const store of ['embedded', 'redis'] as const) {
  describe(`alerts (${store} store${store === 'redis' ? ', three instances' : ''})`, () => {
    let receiver: Receiver
    let gws: TestGateway[]
    beforeAll(async () => {
      receiver = await new Receiver().start()
      gws = []
      for (let i = 0; i < (store === 'redis' ? 3 : 1); i++) {
        gws.push(
          await startGateway({
            upstream: parts.upstream,
            env: { TOLLGATE_CONFIG: '/c.yaml', TEST_ALERT_SECRET: SECRET, ...(store === 'redis' ? { REDIS_URL: parts.redis.url } : {}) },
            files: { '/c.yaml': config(receiver) },
          }),
        )
      }
    })
    afterAll(async () => {
      for (const gw of gws) await gw.close()
      await receiver.close()
    })

    it('sends one signed alert per threshold crossed, however many instances see it, and retries a failing receiver', async () => {
      const gw = gws[0]!
      // One answer's cost: what the fake upstream's answer uses, at 100 micro-dollars a token.
      const probe = await gw.createKey(`probe-${store}`)
      const probed = (await (
        await fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${probe.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: PRICED, messages: [{ role: 'user', content: 'hi' }] }),
        })
      ).json()) as { usage: { completion_tokens: number } }
      const tokens = probed.usage.completion_tokens
      // A budget of exactly five answers; each reserves exactly what it costs (max_tokens = its use).
      const budget = (5 * tokens * 100) / 1e6
      const team = `alerts-${store}`
      expect((await gw.admin('POST', '/admin/teams', { id: team, limits: { usd_per_day: budget } })).status).toBe(201)
      const key = ((await (await gw.admin('POST', `/admin/teams/${team}/keys`, {})).json()) as { key: string }).key
      receiver.failFirst = 2
      const statuses: number[] = []
      for (let i = 0; i < 7; i++) {
        const res = await fetch(`${gws[i % gws.length]!.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: PRICED, messages: [{ role: 'user', content: `q${i}` }], max_tokens: tokens }),
        })
        statuses.push(res.status)
        await res.arrayBuffer()
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429])
      // (In threshold order: a delivery that had to be retried arrives after later ones.)
      const mine = () => receiver.accepted.filter((e) => e.team === team).sort((a, b) => (a.threshold as number) - (b.threshold as number))
      await waitFor(() => mine().length === 3, 'three alerts', 10_000)
      // (A moment more: nothing else comes.)
      await new Promise((r) => setTimeout(r, 300))
      expect(mine().map((e) => e.threshold)).toEqual([0.5, 0.8, 1])
      const [half, most, all] = mine() as Record<string, unknown>[]
      expect(half).toEqual({
        team,
        limit: 'usd_per_day',
        threshold: 0.5,
        used: (3 * tokens * 100) / 1e6,
        limit_value: budget,
        period: new Date().toISOString().slice(0, 10),
        resets_at: expect.stringMatching(/T00:00:00\.000Z$/),
      })
      expect(most).toMatchObject({ threshold: 0.8, used: (4 * tokens * 100) / 1e6 })
      expect(all).toMatchObject({ threshold: 1, used: budget })
      // The receiver refused the first two attempts: they were made again, and none was lost or doubled.
      expect(receiver.badSignatures).toBe(0)
      expect(receiver.attempts).toBeGreaterThanOrEqual(5)
      const metrics = await (await fetch(`${gw.url}/metrics`)).text()
      expect(metrics).toMatch(/tollgate_alerts_total\{outcome="retried"\} [12]/)
    })
  })
}

describe('alerts in the config', () => {
  it('refuse a threshold out of range, a repeated one, and a missing or short secret', async () => {
    for (const [alerts, problem] of [
      ['{ webhook_url: "http://x/h", secret_env: S, thresholds: [0, 1] }', 'alerts.thresholds[0]: must be above 0'],
      ['{ webhook_url: "http://x/h", secret_env: S, thresholds: [0.5, 1.5] }', 'alerts.thresholds[1]: must be at most 1'],
      ['{ webhook_url: "http://x/h", secret_env: S, thresholds: [0.5, 0.5] }', 'must not repeat a threshold'],
      ['{ webhook_url: "http://x/h" }', 'give one of secret and secret_env'],
      ['{ webhook_url: "http://x/h", secret_env: UNSET_VARIABLE }', 'alerts.secret_env: environment variable UNSET_VARIABLE'],
      ['{ webhook_url: "ftp://x/h", secret: "0123456789abcdef" }', 'alerts.webhook_url: must be an http(s) URL'],
    ]) {
      const files = { '/c.yaml': `alerts: ${alerts}\n` }
      await expect(startGateway({ env: { TOLLGATE_CONFIG: '/c.yaml', S: SECRET }, files })).rejects.toThrow(problem)
    }
  })
})
