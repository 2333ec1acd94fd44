/**
 * The embedded store's quota work per request as a team's minute fills up: µs per admission and
 * settlement (one team, BENCH_LIMITS: requests per minute, tokens per day, concurrency) with W
 * admissions in the team's minute window and F requests in flight, in steady state (each step
 * admits one request and settles the one admitted F steps before; the clock moves 60 s / W a step).
 * A cost that stays flat as W and F grow is what an admission that scales looks like.
 *
 *   cd bench && node --import tsx memory-quotas.ts          (MQ_STEPS=20000, MQ_ROUNDS=5)
 *
 * MQ_MODULE names another build of the engine to measure the same way (a path from this folder),
 * for a side-by-side run against an earlier version.
 */
import type { QuotaEngine, Scope, Ticket } from '../src/quota/types.js'
import { BENCH_LIMITS, median } from './lib.js'

const STEPS = Number(process.env.MQ_STEPS ?? 20_000)
const ROUNDS = Number(process.env.MQ_ROUNDS ?? 5)
const modules = ['../src/quota/memory.js', ...(process.env.MQ_MODULE ? [process.env.MQ_MODULE] : [])]
const engines = await Promise.all(
  modules.map(async (m) => ({ name: m, Engine: ((await import(m)) as { MemoryQuotas: new () => QuotaEngine }).MemoryQuotas })),
)

const scopes: Scope[] = [{ id: 'team', label: 'team', limits: BENCH_LIMITS }]
const usage = { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 }

/** µs per step (an admission and a settlement) once W admissions are in the window and F in flight. */
async function measure(Engine: new () => QuotaEngine, w: number, f: number): Promise<number> {
  const q = new Engine()
  const step = 60_000 / w
  let now = Date.parse('2026-11-30T12:00:00Z')
  const inflight: Ticket[] = []
  let seq = 0
  const one = async () => {
    now += step
    const admitted = await q.admit({ team: 'bench', requestId: `r${++seq}`, scopes, tokens: 100, now: Math.floor(now) })
    if (!admitted.ok) throw new Error(`refused: ${admitted.refusal.kind}`)
    inflight.push(admitted.ticket)
    if (inflight.length > f)
      await q.settle({ ticket: inflight.shift()!, keyId: 'key_1', model: 'm', usage, estimated: false, now: Math.floor(now) })
  }
  for (let i = 0; i < w + f; i++) await one() // fill the window and the requests in flight
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < STEPS; i++) await one()
  return Number(process.hrtime.bigint() - t0) / 1e3 / STEPS
}

console.log(`µs per admission and settlement, median of ${ROUNDS} rounds of ${STEPS} (engines interleaved)`)
console.log(`| admissions in the minute | in flight | ${engines.map((e) => e.name).join(' | ')} |`)
console.log(`| --- | --- | ${engines.map(() => '---').join(' | ')} |`)
for (const [w, f] of [
  [100, 10],
  [1_000, 100],
  [10_000, 1_000],
  [60_000, 5_000],
] as const) {
  const times = engines.map(() => [] as number[])
  for (let r = 0; r < ROUNDS; r++) for (const [i, e] of engines.entries()) times[i]!.push(await measure(e.Engine, w, f))
  console.log(`| ${w} | ${f} | ${times.map((t) => median(t).toFixed(2)).join(' | ')} |`)
}
