/**
 * How long each script call holds Redis (which runs one command at a time, so an admission waits
 * behind whatever runs before it): SLOWLOG with a threshold of 0 records every command's own
 * time while C clients drive the gateway with Redis (auth, limits, usage), and the calls are
 * grouped by script. Prints calls per request, the time per call at p50, p90, p99 and max, and the
 * time per request. Every command a script calls is logged too, and that bookkeeping is in the
 * times: compare the scripts with each other, not with a run without the log.
 *
 *   cd bench && node --import tsx redis-slowlog.ts          (RS_C=16, RS_N=5000; uses ../dist)
 */
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { Redis } from 'ioredis'
import { ROOT, drive, killAll, quantile, startOrigin, startTarget } from './lib.js'

const C = Number(process.env.RS_C ?? 16)
const N = Number(process.env.RS_N ?? 5_000)
const SCRIPTS = ['admit', 'settle', 'audit']

const bySha = new Map(
  SCRIPTS.map((name) => [
    createHash('sha1')
      .update(readFileSync(`${ROOT}src/quota/lua/${name}.lua`, 'utf8'))
      .digest('hex'),
    name,
  ]),
)
const { url: origin } = await startOrigin()
const { base, auth, redis } = await startTarget('redis', origin)
const client = new Redis(redis!.url)
try {
  await drive(base, auth, 3000, C)
  await client.config('SET', 'slowlog-log-slower-than', '0')
  // The log holds the commands the scripts call too: some 15 per request.
  await client.config('SET', 'slowlog-max-len', String(N * 40))
  await client.slowlog('RESET')
  const { latencies } = await drive(base, auth, N, C)
  const log = (await client.slowlog('GET', -1)) as [number, number, number, string[]][]
  if (log.length >= N * 40) throw new Error('the slow log filled up: raise its length')
  const times = new Map<string, number[]>()
  for (const [, , micros, args] of log) {
    const name = args[0]?.toLowerCase() === 'evalsha' ? bySha.get(args[1] ?? '') : undefined
    if (name === undefined) continue
    let list = times.get(name)
    if (list === undefined) times.set(name, (list = []))
    list.push(micros)
  }
  console.log(
    `script calls in Redis, ${N} requests at c=${C} (request p50 ${quantile(latencies, 0.5).toFixed(2)} ms, p99 ${quantile(latencies, 0.99).toFixed(2)} ms)`,
  )
  console.log('| script | calls/request | µs per call p50 | p90 | p99 | max | µs per request |')
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  for (const name of SCRIPTS) {
    const t = times.get(name) ?? []
    const sum = t.reduce((a, b) => a + b, 0)
    console.log(
      `| ${name} | ${(t.length / N).toFixed(3)} | ${t.length ? quantile(t, 0.5) : '–'} | ${t.length ? quantile(t, 0.9) : '–'} | ${t.length ? quantile(t, 0.99) : '–'} | ${t.length ? Math.max(...t) : '–'} | ${(sum / N).toFixed(1)} |`,
    )
  }
} finally {
  client.disconnect()
  killAll()
  await redis!.stop()
}
