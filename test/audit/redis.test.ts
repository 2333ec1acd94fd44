import { describe, expect, it } from 'vitest'
import { RedisAudit } from '../../src/audit/redis.js'
import { useRedis } from '../helpers/redis.js'
import { auditEntry } from '../helpers/audit.js'
import { waitFor } from '../helpers/wait.js'

/** The audit stream is written in batches: every entry arrives, in order, with all its fields. */

const redis = useRedis()
let n = 0

const entry = (i: number) => auditEntry(i, i % 2 === 1)

async function stream(prefix: string): Promise<Record<string, string>[]> {
  const raw = (await redis.client.xrange(`${prefix}audit`, '-', '+')) as [string, string[]][]
  return raw.map(([, fields]) =>
    Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i]!, fields[2 * i + 1]!])),
  )
}

describe('the audit stream', () => {
  it('gets every one of 150 entries written at once (three batches), in order, with every field', async () => {
    const prefix = `a${++n}:`
    const audit = new RedisAudit({ client: redis.client, prefix })
    await Promise.all(Array.from({ length: 150 }, (_, i) => audit.write(entry(i))))
    await waitFor(async () => (await stream(prefix)).length === 150, '150 audit entries')
    const written = await stream(prefix)
    expect(written.map((e) => e.request_id)).toEqual(Array.from({ length: 150 }, (_, i) => `req-${i}`))
    expect(written[7]).toEqual({
      time: '2026-03-10T12:00:00.007Z',
      request_id: 'req-7',
      team: 'ml',
      key_id: 'key_1',
      end_user: 'user-1',
      model: 'm',
      endpoint: 'chat',
      status: '200',
      prompt_tokens: '7',
      completion_tokens: '14',
      total_tokens: '21',
      estimated: '1',
      cost_usd: '0.000007',
      latency_ms: '17',
    })
  })

  it('writes a lone entry after a short wait, and what waits at once when asked (shutdown)', async () => {
    const prefix = `a${++n}:`
    const audit = new RedisAudit({ client: redis.client, prefix })
    await audit.write(entry(1)) // the call that opens a batch resolves when the batch is written
    expect((await stream(prefix)).map((e) => e.request_id)).toEqual(['req-1'])
    void audit.write(entry(2))
    await audit.flush()
    expect((await stream(prefix)).map((e) => e.request_id)).toEqual(['req-1', 'req-2'])
  })

  it('keeps the stream near its cap', async () => {
    const prefix = `a${++n}:`
    const audit = new RedisAudit({ client: redis.client, prefix, maxLen: 100 })
    for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 200 }, (_, i) => audit.write(entry(round * 200 + i))))
    await audit.flush()
    const length = await redis.client.xlen(`${prefix}audit`)
    expect(length).toBeGreaterThanOrEqual(100)
    expect(length).toBeLessThan(400)
  })
})
