/**
 * What the quota work leaves in Redis per request: `RedisQuotas` admits and settles, and
 * `RedisAudit` audits, N
 * requests at C at a time (lib.ts's quotaWork, the bench's limits), then prints Redis's memory
 * growth per request, its key count, and the share of the settled-markers (the keys and sets named
 * `…settled…`, by MEMORY USAGE). The minute window and the audit stream are bounded (a minute of
 * admissions, the stream's cap); what outlives them is what grows with the request rate.
 *
 *   cd bench && node --import tsx redis-memory.ts          (BENCH_N=100000, BENCH_C=64; starts its own redis-server)
 */
import { Redis } from 'ioredis'
import { RedisAudit } from '../src/audit/redis.js'
import { RedisQuotas } from '../src/quota/redis.js'
import { startRedis } from '../test/helpers/redis.js'
import { quotaWork } from './lib.js'

const N = Number(process.env.BENCH_N ?? 100_000)
const C = Number(process.env.BENCH_C ?? 64)

const server = await startRedis()
const client = new Redis(server.url)
try {
  const used = async () => Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1])
  const before = await used()
  await quotaWork(new RedisQuotas({ client }), N, C, 'all', new RedisAudit({ client }))
  const after = await used()
  let markers = 0
  let markerKeys = 0
  for (let cursor = '0'; ;) {
    const [next, keys] = await client.scan(cursor, 'MATCH', '*settled*', 'COUNT', 1000)
    for (const key of keys) markers += Number(await client.memory('USAGE', key))
    markerKeys += keys.length
    cursor = next
    if (cursor === '0') break
  }
  console.log(
    `${N} requests at c=${C}: Redis grew ${((after - before) / 1e6).toFixed(1)} MB (${((after - before) / N).toFixed(0)} bytes per request), ${await client.dbsize()} keys`,
  )
  console.log(
    `settled-markers: ${markerKeys} keys, ${(markers / 1e6).toFixed(2)} MB (${(markers / N).toFixed(1)} bytes per request), kept up to 6 hours`,
  )
} finally {
  client.disconnect()
  await server.stop()
}
