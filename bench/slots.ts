/**
 * Exactness of concurrency slots under load, not speed: C clients, each sending its next request
 * only once its last answer is complete, on a team limited to C concurrent requests. The team never
 * has more than C in flight, so every refusal is one the gateway should not have made (a settlement
 * that reached Redis after the next admission). Requests go to the instances in turn.
 *
 *   cd bench && node --import tsx slots.ts               (BENCH_C=8, BENCH_N=4000, BENCH_INSTANCES=1)
 *   BENCH_INSTANCES=3 node --import tsx slots.ts         (three gateways on one Redis)
 *   BENCH_MEMORY=1 node --import tsx slots.ts            (the embedded store, one instance)
 *
 * Uses the build in ../dist (npm run build).
 */
import { Pool } from 'undici'
import { startRedis } from '../test/helpers/redis.js'
import { BODY, benchKey, killAll, startGateway, startOrigin } from './lib.js'

const C = Number(process.env.BENCH_C ?? 8)
const N = Number(process.env.BENCH_N ?? 4000)
const MEMORY = Boolean(process.env.BENCH_MEMORY)
const INSTANCES = MEMORY ? 1 : Number(process.env.BENCH_INSTANCES ?? 1)

try {
  const { url: origin } = await startOrigin()
  const redis = MEMORY ? null : await startRedis()
  const bases = (await Promise.all(Array.from({ length: INSTANCES }, () => startGateway(origin, redis?.url)))).map((g) => g.base)
  const auth = `Bearer ${await benchKey(bases[0]!, 'slots', { concurrent_requests: C })}`
  const pools = bases.map((base) => new Pool(base, { connections: C }))
  let sent = 0
  const statuses = new Map<number, number>()
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (sent < N) {
        const pool = pools[sent++ % pools.length]!
        const res = await pool.request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: auth },
          body: BODY,
        })
        await res.body.dump()
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
      }
    }),
  )
  await Promise.all(pools.map((p) => p.close()))
  const refused = statuses.get(429) ?? 0
  console.log(
    `${N} requests, ${C} sequential clients, a team of ${C} slots, ${MEMORY ? 'embedded store' : `${INSTANCES} instance(s) on Redis`}: ${refused} refused (${((100 * refused) / N).toFixed(2)} %); statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
  )
  await redis?.stop()
} finally {
  killAll()
}
