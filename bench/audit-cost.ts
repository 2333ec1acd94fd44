/**
 * What writing audit entries costs Redis, two ways: the gateway's audit script (one EVALSHA per 64
 * entries, each entry an XADD from Lua) against the same XADDs sent as a plain pipeline. Redis's
 * own CPU per entry, from its threads' scheduler counts, alternating the two ways.
 *
 *   npx tsx bench/audit-cost.ts          (from the repository root; starts its own redis-server)
 */
import { readFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import { startRedis } from '../test/helpers/redis.js'
import { ROOT, cpuMicros, median } from './lib.js'

const BATCH = 64
const BATCHES = 1_000
const ROUNDS = 5
const server = await startRedis()
const client = new Redis(server.url)
try {
  const lua = readFileSync(`${ROOT}src/quota/lua/audit.lua`, 'utf8')
  const entry = (i: number) => [
    'time',
    '2026-11-30T17:30:00.123Z',
    'request_id',
    `req-${i}`,
    'team',
    'bench',
    'key_id',
    'k_0123456789',
    'model',
    'meta/llama-3.1-8b-instruct',
    'endpoint',
    'chat',
    'status',
    '200',
    'prompt_tokens',
    '12',
    'completion_tokens',
    '32',
    'total_tokens',
    '44',
    'estimated',
    '0',
    'latency_ms',
    '3',
  ]
  const ways: [string, () => Promise<unknown>][] = [
    [
      'audit script (EVALSHA per 64 entries)',
      () => client.eval(lua, 1, 'bench:audit', '100000', '24', ...Array.from({ length: BATCH }, (_, i) => entry(i)).flat()),
    ],
    [
      'pipelined XADDs',
      () => {
        const pipeline = client.pipeline()
        for (let i = 0; i < BATCH; i++) pipeline.xadd('bench:audit', 'MAXLEN', '~', '100000', '*', ...entry(i))
        return pipeline.exec()
      },
    ],
  ]
  const perEntry = new Map<string, number[]>(ways.map(([name]) => [name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, write] of round % 2 === 0 ? ways : [...ways].reverse()) {
      const before = cpuMicros(server.process.pid!)
      for (let b = 0; b < BATCHES; b++) await write()
      perEntry.get(name)!.push((cpuMicros(server.process.pid!) - before) / (BATCH * BATCHES))
    }
  }
  console.log(`| way | Redis CPU µs per entry (median of ${ROUNDS} rounds of ${BATCH * BATCHES}) |\n| --- | --- |`)
  for (const [name, t] of perEntry) console.log(`| ${name} | ${median(t).toFixed(2)} |`)
} finally {
  client.disconnect()
  await server.stop()
}
