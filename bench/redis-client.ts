/**
 * The gateway's Redis work per request as the client sees it: one admission, one settlement and one
 * audit entry through `RedisQuotas`, on a connection as the gateway makes it (auto-pipelining on),
 * at 1 and 64 concurrent requests. Prints the client process's CPU per request (median of
 * alternating rounds), to compare ways of sending.
 *
 *   cd bench && node --import tsx redis-client.ts        (ROUNDS=7, N=4000; starts its own redis-server)
 */
import { Redis } from 'ioredis'
import { RedisQuotas } from '../src/quota/redis.js'
import { startRedis } from '../test/helpers/redis.js'
import { median, quotaWork } from './lib.js'

const ROUNDS = Number(process.env.ROUNDS ?? 7)
const N = Number(process.env.N ?? 4000)
const server = await startRedis()
const client = new Redis(server.url, { enableAutoPipelining: true })
let prefix = 0

async function measure(concurrency: number): Promise<number> {
  const before = process.cpuUsage()
  await quotaWork(new RedisQuotas({ client, prefix: `b${++prefix}:` }), N, concurrency)
  const used = process.cpuUsage(before)
  return (used.user + used.system) / N
}

const c1: number[] = []
const c64: number[] = []
for (let round = 0; round < ROUNDS; round++) {
  c1.push(await measure(1))
  c64.push(await measure(64))
}
console.log(`client CPU per request (admission + settlement + audit entry), median of ${ROUNDS} rounds of ${N}`)
console.log(`| c=1 (µs) | c=64 (µs) |\n| --- | --- |\n| ${median(c1).toFixed(1)} | ${median(c64).toFixed(1)} |`)
client.disconnect()
await server.stop()
