import fc from 'fast-check'
import type { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import type { Limits } from '../../src/limits.js'
import { RedisQuotas } from '../../src/quota/redis.js'
import type { Admission, AdmitResult, Scope, Ticket } from '../../src/quota/types.js'
import { RedisKeyPool, type Pick } from '../../src/upstream/key-pool.js'
import { poolUpstream } from '../helpers/key-pool.js'
import { useRedis } from '../helpers/redis.js'

/**
 * Coalescing keeps every decision exact: a team's admissions (and settlements, and an upstream's
 * key picks) that arrive while one of its script calls is in flight go to Redis as one call, and
 * that call must decide each of them exactly as the same calls made one by one, in the same order,
 * would. Property tests over random limits and random mixes of calls, each plan played twice on
 * one real Redis, under two prefixes: once each call awaited before the next, once each round's
 * calls made at once (the first goes alone, the rest as one batched call). Every decision, every
 * header figure and every key the scripts leave must be the same.
 */

const redis = useRedis()
const T0 = Date.parse('2026-03-10T23:59:00Z') // a day ends within the runs: day keys roll over too
const TEAM = 'ml'
const SCOPE_IDS = ['team', 'model:m', 'key:k1', 'key:k2', 'user:u'] as const

const limitsArb: fc.Arbitrary<Limits> = fc.record(
  {
    requests_per_minute: fc.integer({ min: 1, max: 20 }),
    tokens_per_minute: fc.integer({ min: 500, max: 8_000 }),
    tokens_per_day: fc.integer({ min: 2_000, max: 60_000 }),
    tokens_per_month: fc.integer({ min: 1_000, max: 40_000 }),
    concurrent_requests: fc.integer({ min: 1, max: 8 }),
    usd_per_day: fc.integer({ min: 10_000, max: 2_000_000 }), // micro-dollars, as the engines count
    usd_per_month: fc.integer({ min: 50_000, max: 4_000_000 }),
  },
  { requiredKeys: [] },
)

const admitArb = fc.record({
  /** Which scopes besides the team's (bits over SCOPE_IDS[1..]). */
  scopes: fc.integer({ min: 0, max: 15 }),
  tokens: fc.integer({ min: 0, max: 900 }),
  cost: fc.integer({ min: 0, max: 60_000 }),
})
const settleArb = fc.record({
  prompt: fc.integer({ min: 0, max: 700 }),
  completion: fc.integer({ min: 0, max: 700 }),
  estimated: fc.boolean(),
  cost: fc.integer({ min: 0, max: 80_000 }),
})
const roundArb = fc.record({
  /** How far the clock moves before the round: within a minute, past one, or past the day's end. */
  gapMs: fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.integer({ min: 10_000, max: 70_000 })),
  admits: fc.array(admitArb, { minLength: 1, maxLength: 24 }),
  /** Which of the tickets open after the round's admissions settle in it (by index, cycled). */
  settle: fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
  usage: fc.array(settleArb, { minLength: 1, maxLength: 8 }),
})
const planArb = fc.record({
  limits: fc.tuple(...SCOPE_IDS.map(() => fc.oneof(limitsArb, fc.constant({})))),
  rounds: fc.array(roundArb, { minLength: 2, maxLength: 6 }),
})
type Plan = typeof planArb extends fc.Arbitrary<infer P> ? P : never

interface Played {
  decisions: AdmitResult[]
  /** Every key the scripts left under the engine's prefix (prefix taken off), with its value. */
  state: Record<string, unknown>
  /** Script calls sent to Redis. */
  calls: number
  /** Calls made (admissions and settlements). */
  made: number
  /** Script calls a coalescing engine needs: per round, one alone then one batch, each for admissions and settlements. */
  batchedCalls: number
}

async function scriptCalls(client: Redis): Promise<number> {
  const line = (await client.info('commandstats')).split('\r\n').find((l) => l.startsWith('cmdstat_evalsha:'))
  return Number(/calls=(\d+)/.exec(line ?? '')?.[1] ?? 0)
}

/**
 * Every key under `prefix` and its value. `scoresOnly`: of sorted sets, only the scores, where the
 * members are random ids (an upstream key's request log).
 */
async function dump(client: Redis, prefix: string, scoresOnly = false): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) {
      const type = await client.type(key)
      const name = key.slice(prefix.length)
      if (type === 'hash') out[name] = await client.hgetall(key)
      else if (type === 'zset') {
        const flat = await client.zrange(key, 0, -1, 'WITHSCORES')
        out[name] = scoresOnly ? flat.filter((_, i) => i % 2 === 1) : flat
      } else if (type === 'string') out[name] = await client.get(key)
      else out[name] = type
    }
  } while (cursor !== '0')
  return out
}

async function play(plan: Plan, prefix: string, together: boolean): Promise<Played> {
  const client = redis.client
  const engine = new RedisQuotas({ client, prefix })
  const scopes: Scope[] = SCOPE_IDS.map((id, i) => ({ id, label: id, limits: plan.limits[i]! }))
  const decisions: AdmitResult[] = []
  const open: Ticket[] = []
  let now = T0
  let made = 0
  let batchedCalls = 0
  const before = await scriptCalls(client)
  const run = async <T>(calls: (() => Promise<T>)[]): Promise<T[]> => {
    made += calls.length
    batchedCalls += Math.min(calls.length, 2)
    if (together) return Promise.all(calls.map((c) => c()))
    const out: T[] = []
    for (const c of calls) out.push(await c())
    return out
  }
  for (const [r, round] of plan.rounds.entries()) {
    now += round.gapMs
    const admissions: Admission[] = round.admits.map((a, i) => ({
      team: TEAM,
      requestId: `r${r}-${i}`,
      scopes: [scopes[0]!, ...scopes.slice(1).filter((_, b) => a.scopes & (1 << b))],
      tokens: a.tokens,
      cost: a.cost,
      now: now + i,
    }))
    now += admissions.length
    const results = await run(admissions.map((a) => () => engine.admit(a)))
    decisions.push(...results)
    for (const result of results) if (result.ok) open.push(result.ticket)
    const settling = open.filter((_, i) => round.settle[i % round.settle.length])
    for (const t of settling) open.splice(open.indexOf(t), 1)
    await run(
      settling.map((ticket, i) => {
        const u = round.usage[i % round.usage.length]!
        const usage = { prompt_tokens: u.prompt, completion_tokens: u.completion, total_tokens: u.prompt + u.completion }
        const at = now + i
        return () =>
          engine.settle({ ticket, keyId: 'k1', endUser: null, model: 'm', usage, estimated: u.estimated, costMicros: u.cost, now: at })
      }),
    )
    now += settling.length
  }
  await engine.shutdown()
  const calls = (await scriptCalls(client)) - before
  return { decisions, state: await dump(client, prefix), calls, made, batchedCalls }
}

describe('a batch of calls against N calls one by one', () => {
  it('decides every admission and settlement alike, and leaves Redis alike', async () => {
    // Load the scripts first, so every call counted below is one EVALSHA that ran.
    const warm = new RedisQuotas({ client: redis.client, prefix: 'warm:' })
    const w = await warm.admit({
      team: TEAM,
      requestId: 'w',
      scopes: [{ id: 'team', label: 'team', limits: { requests_per_minute: 1 } }],
      tokens: 0,
      now: T0,
    })
    if (w.ok)
      await warm.settle({
        ticket: w.ticket,
        keyId: 'k',
        endUser: null,
        model: 'm',
        usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
        estimated: false,
        now: T0,
      })

    let run = 0
    let admitted = 0
    const refused = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(planArb, async (plan) => {
        run++
        const single = await play(plan, `one-${run}:`, false)
        const batched = await play(plan, `many-${run}:`, true)
        expect(batched.decisions).toEqual(single.decisions)
        expect(batched.state).toEqual(single.state)
        // And it was coalesced: one by one, one script call per call; together, per round at most
        // two for its admissions and two for its settlements.
        expect(single.calls).toBe(single.made)
        expect(batched.calls).toBe(batched.batchedCalls)
        for (const d of single.decisions) {
          if (d.ok) admitted++
          else refused.set(d.refusal.kind, (refused.get(d.refusal.kind) ?? 0) + 1)
        }
        await redis.client.flushall()
      }),
      { numRuns: 100 },
    )
    // The runs admitted plenty, and reached every kind of limit.
    expect(admitted).toBeGreaterThan(100)
    expect([...refused.keys()].sort()).toEqual([
      'concurrency',
      'requests',
      'tokens',
      'tokens_per_day',
      'tokens_per_month',
      'usd_per_day',
      'usd_per_month',
    ])
  }, 120_000)
})

const poolArb = fc.record({
  /** Per key: its requests-per-minute budget, or none. */
  budgets: fc.array(fc.option(fc.integer({ min: 1, max: 6 }), { nil: null }), { minLength: 1, maxLength: 4 }),
  /** Per key: cooling down for this long after the first pick's time, refused, or neither. */
  marks: fc.array(fc.oneof(fc.constant(null), fc.constant('refused' as const), fc.integer({ min: 1, max: 90_000 })), { maxLength: 4 }),
  rounds: fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 40_000 }), picks: fc.integer({ min: 1, max: 24 }) }), {
    minLength: 1,
    maxLength: 6,
  }),
})
type PoolPlan = typeof poolArb extends fc.Arbitrary<infer P> ? P : never

async function playPicks(plan: PoolPlan, prefix: string, together: boolean) {
  const pool = new RedisKeyPool(poolUpstream(plan.budgets), redis.client, prefix)
  for (const [i, mark] of plan.marks.slice(0, plan.budgets.length).entries()) {
    if (mark === 'refused') await pool.refuse(i, T0)
    else if (mark !== null) await pool.coolDown(i, T0 + mark)
  }
  const before = await scriptCalls(redis.client)
  const picks: Pick[] = []
  let now = T0
  let batchedCalls = 0
  for (const round of plan.rounds) {
    now += round.gapMs
    const times = Array.from({ length: round.picks }, (_, i) => now + i)
    now += round.picks
    batchedCalls += Math.min(round.picks, 2)
    if (together) picks.push(...(await Promise.all(times.map((t) => pool.pick(t)))))
    else for (const t of times) picks.push(await pool.pick(t))
  }
  const calls = (await scriptCalls(redis.client)) - before
  return { picks, calls, batchedCalls, state: await dump(redis.client, prefix, true) }
}

describe('a batch of key picks against N picks one by one', () => {
  it('chooses the same key (or the same wait) for each, and leaves the same request logs', async () => {
    let run = 0
    const outcomes = new Set<string>()
    await fc.assert(
      fc.asyncProperty(poolArb, async (plan) => {
        run++
        const single = await playPicks(plan, `pick-one-${run}:`, false)
        const batched = await playPicks(plan, `pick-many-${run}:`, true)
        expect(batched.picks).toEqual(single.picks)
        expect(batched.state).toEqual(single.state)
        expect(single.calls).toBe(single.picks.length)
        expect(batched.calls).toBe(batched.batchedCalls)
        for (const p of single.picks) outcomes.add(p.ok ? 'picked' : 'wait')
        await redis.client.flushall()
      }),
      { numRuns: 100 },
    )
    // Keys were picked, and budgets and cooldowns made picks wait.
    expect([...outcomes].sort()).toEqual(['picked', 'wait'])
  }, 120_000)
})
