/**
 * The gateway's Redis work per request as the client sees it: one admission, one settlement and one
 * audit entry through `RedisQuotas`, on a connection with ioredis auto-pipelining on (as the
 * gateway connects) and one with it off, at 1 and 64 concurrent requests. Prints the client
 * process's CPU per request (median of alternating rounds), to compare ways of sending. (The
 * scripts are sent by `RedisQuotas` itself, batched under load, so auto-pipelining no longer
 * touches them; the two rows differ by noise.)
 *
 *   cd bench && node --import tsx redis-client.ts        (ROUNDS=7, N=4000; starts its own redis-server)
 */
import { Redis } from 'ioredis'
import { RedisQuotas } from '../src/quota/redis.js'
import type { Scope } from '../src/quota/types.js'
import { startRedis } from '../test/helpers/redis.js'

const ROUNDS = Number(process.env.ROUNDS ?? 7)
const N = Number(process.env.N ?? 4000)
const server = await startRedis()
const big = 1e12
const scopes: Scope[] = [{ id: 'team', label: 'team', limits: { requests_per_minute: big, tokens_per_day: big, concurrent_requests: big } }]
const usage = { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 }
const clients = {
  'auto-pipelining on': new Redis(server.url, { enableAutoPipelining: true }),
  'auto-pipelining off': new Redis(server.url, { enableAutoPipelining: false }),
}
let prefix = 0

async function run(client: Redis, concurrency: number): Promise<number> {
  const q = new RedisQuotas({ client, prefix: `b${++prefix}:` })
  let seq = 0
  let left = N
  const before = process.cpuUsage()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (left-- > 0) {
      const now = Date.now()
      const requestId = `r${++seq}`
      const admitted = await q.admit({ team: 'a', requestId, scopes, tokens: 100, now })
      if (!admitted.ok) throw new Error('refused')
      await q.settle({ ticket: admitted.ticket, keyId: 'k', model: 'm', usage, estimated: false, now })
      void q.audit({ time: new Date(now).toISOString(), request_id: requestId, team: 'a', key_id: 'k', model: 'm', endpoint: 'chat', status: 200, ...usage, estimated: false, latency_ms: 3 })
    }
  }))
  await q.writeAudit()
  const used = process.cpuUsage(before)
  return (used.user + used.system) / N
}

console.log(`client CPU per request (admission + settlement + audit entry), median of ${ROUNDS} rounds of ${N}`)
console.log('| connection | c=1 (µs) | c=64 (µs) |\n| --- | --- | --- |')
const results = new Map<string, number[][]>(Object.keys(clients).map((k) => [k, [[], []]]))
for (let round = 0; round < ROUNDS; round++) {
  for (const [c, concurrency] of [1, 64].entries()) {
    for (const [name, client] of Object.entries(clients)) results.get(name)![c]!.push(await run(client, concurrency))
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
for (const [name, [c1, c64]] of results) console.log(`| ${name} | ${median(c1!).toFixed(1)} | ${median(c64!).toFixed(1)} |`)
for (const client of Object.values(clients)) client.disconnect()
await server.stop()
