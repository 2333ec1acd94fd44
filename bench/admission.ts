/**
 * Admission cost: one Lua script doing every check (what the gateway does) against
 * @fastify/rate-limit's Redis store for the request rate followed by the same script for tokens
 * and concurrency (two round trips, as the plugin's hook and then the handler would run).
 *
 *   cd bench && node --import tsx admission.ts        (BENCH_N=5000; starts its own redis-server on a free port)
 *
 * Prints median and p99 latency per admission at concurrency 1, and admissions per second at
 * concurrency 16, for both, side by side in one run.
 */
import { createRequire } from 'node:module'
import { Redis } from 'ioredis'
import { RedisQuotas } from '../src/quota/redis.js'
import type { Scope } from '../src/quota/types.js'
import { startRedis } from '../test/helpers/redis.js'

const require = createRequire(import.meta.url)
const RateLimitRedisStore = require('@fastify/rate-limit/store/RedisStore.js') as new (
  continueExceeding: boolean,
  exponentialBackoff: boolean,
  redis: Redis,
  key?: string,
) => { incr(key: string, cb: (err: Error | null, res?: { current: number; ttl: number }) => void, timeWindow: number, max: number): void }

const N = Number(process.env.BENCH_N ?? 5_000)
const server = await startRedis()
const client = new Redis(server.url)
const quotas = new RedisQuotas({ client, prefix: 'bench:' })
const rateStore = new RateLimitRedisStore(false, false, client, 'bench-rl:')
const big = 1e12
const all: Scope[] = [{ id: 'team', label: 'team', limits: { requests_per_minute: big, tokens_per_day: big, concurrent_requests: big } }]
const withoutRate: Scope[] = [{ id: 'team2', label: 'team', limits: { tokens_per_day: big, concurrent_requests: big } }]
let seq = 0

const oneScript = async () => {
  await quotas.admit({ team: 'a', requestId: `r${++seq}`, scopes: all, tokens: 100, now: Date.now() })
}
const twoTrips = async () => {
  await new Promise<void>((resolve, reject) => rateStore.incr('team-a', (err) => (err ? reject(err) : resolve()), 60_000, big))
  await quotas.admit({ team: 'b', requestId: `r${++seq}`, scopes: withoutRate, tokens: 100, now: Date.now() })
}

async function latency(fn: () => Promise<void>): Promise<{ p50: number; p99: number }> {
  const times: number[] = []
  for (let i = 0; i < N; i++) {
    const t = process.hrtime.bigint()
    await fn()
    times.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
  times.sort((a, b) => a - b)
  return { p50: times[Math.floor(N * 0.5)]!, p99: times[Math.floor(N * 0.99)]! }
}

async function throughput(fn: () => Promise<void>, concurrency = 16): Promise<number> {
  let left = N
  const start = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await fn()
    }),
  )
  return N / (Number(process.hrtime.bigint() - start) / 1e9)
}

// Warm up both paths, then alternate them so the machine's noise falls on both alike.
await latency(oneScript)
await latency(twoTrips)
const rows: Record<string, { p50: number; p99: number; rps: number }[]> = { 'one Lua script': [], 'rate-limit + script': [] }
for (let round = 0; round < 3; round++) {
  rows['one Lua script']!.push({ ...(await latency(oneScript)), rps: await throughput(oneScript) })
  rows['rate-limit + script']!.push({ ...(await latency(twoTrips)), rps: await throughput(twoTrips) })
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
console.log(`admissions: ${N} per measurement, 3 rounds, medians of rounds; redis-server on loopback`)
console.log('| path | p50 ms (c=1) | p99 ms (c=1) | admissions/s (c=16) |')
console.log('| --- | --- | --- | --- |')
for (const [name, rs] of Object.entries(rows)) {
  console.log(
    `| ${name} | ${median(rs.map((r) => r.p50)).toFixed(3)} | ${median(rs.map((r) => r.p99)).toFixed(3)} | ${Math.round(median(rs.map((r) => r.rps)))} |`,
  )
}
const a = rows['one Lua script']!
const b = rows['rate-limit + script']!
console.log(`ratio p50 (two trips / one script): ${(median(b.map((r) => r.p50)) / median(a.map((r) => r.p50))).toFixed(2)}`)
console.log(`ratio throughput (one script / two trips): ${(median(a.map((r) => r.rps)) / median(b.map((r) => r.rps))).toFixed(2)}`)
client.disconnect()
await server.stop()
