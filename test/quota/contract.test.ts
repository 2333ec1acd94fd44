import { Redis } from 'ioredis'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { Limits } from '../../src/limits.js'
import { MemoryQuotas } from '../../src/quota/memory.js'
import { RedisQuotas } from '../../src/quota/redis.js'
import { LEASE_MS, type AdmitResult, type QuotaEngine, type Scope, type Ticket } from '../../src/quota/types.js'
import { useRedis } from '../helpers/redis.js'

/** One contract, two engines: the embedded one and Redis's Lua scripts, under an injected clock. */

const redis = useRedis()
let n = 0

const T0 = Date.parse('2026-03-10T12:00:00Z')
const team = (limits: Limits): Scope => ({ id: 'team', label: "team 'ml'", limits })
const key = (limits: Limits): Scope => ({ id: 'key:key_1', label: "key key_1 of team 'ml'", limits })

function ok(result: AdmitResult): Ticket {
  if (!result.ok) throw new Error(`refused: ${JSON.stringify(result.refusal)}`)
  return result.ticket
}
function refused(result: AdmitResult) {
  if (result.ok) throw new Error('admitted')
  return result.refusal
}

// As the gateway connects (REDIS_OPTIONS): auto-pipelining on (the status and usage reads and the
// lease renewals use pipelines; the scripts are sent by the engine itself, alone or batched).
const NO_TOKENS = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }
let pipelining: Redis
beforeAll(() => {
  pipelining = new Redis(redis.server.url, { enableAutoPipelining: true })
})
afterAll(() => pipelining.disconnect())

describe.each([
  ['memory', () => new MemoryQuotas() as QuotaEngine],
  ['redis', () => new RedisQuotas({ client: redis.client, prefix: `q${++n}:` }) as QuotaEngine],
  ['redis, auto-pipelining', () => new RedisQuotas({ client: pipelining, prefix: `q${++n}:` }) as QuotaEngine],
])('%s quotas', (_name, make) => {
  let q: QuotaEngine
  let seq = 0
  beforeEach(() => {
    q = make()
  })
  const admit = (scopes: Scope[], tokens: number, now: number) => q.admit({ team: 'ml', requestId: `r${++seq}`, scopes, tokens, now })
  const settle = (ticket: Ticket, total: number, now: number, model = 'm', keyId = 'key_1', estimated = false) =>
    q.settle({
      ticket,
      keyId,
      model,
      usage: { prompt_tokens: Math.floor(total / 2), completion_tokens: total - Math.floor(total / 2), total_tokens: total },
      estimated,
      // Seven micro-dollars a token: the reports' cost_usd is 7e-6 × total_tokens, summed exactly.
      costMicros: total * 7,
      now,
    })

  it('budgets: each admission reserves what it may cost, settlement counts what it did, and a spent budget waits for its period', async () => {
    // usd_per_day of $0.001: 1,000 micro-dollars (scopes carry budgets as the engines count them).
    const s = [team({ usd_per_day: 1000, usd_per_month: 100_000 })]
    const costly = (now: number, cost = 300) => q.admit({ team: 'ml', requestId: `r${++seq}`, scopes: s, tokens: 10, cost, now })
    const held = [ok(await costly(T0)), ok(await costly(T0)), ok(await costly(T0))]
    expect(refused(await costly(T0))).toMatchObject({ kind: 'usd_per_day', limit: 1000, used: 900, requested: 300, final: false })
    // One settles at a cost of 100: 100 spent, 600 still reserved, so 300 more fit exactly.
    await q.settle({ ticket: held[0]!, keyId: 'key_1', model: 'm', usage: NO_TOKENS, estimated: false, costMicros: 100, now: T0 + 1 })
    held.push(ok(await costly(T0 + 2)))
    expect(refused(await costly(T0 + 2, 1))).toMatchObject({ kind: 'usd_per_day', used: 1000, final: false })
    for (const t of held.slice(1))
      await q.settle({ ticket: t, keyId: 'key_1', model: 'm', usage: NO_TOKENS, estimated: false, costMicros: 300, now: T0 + 3 })
    const status = await q.status('ml', s, T0 + 3)
    expect(status.team?.usd_per_day).toEqual({ limit: 0.001, used: 0.001, remaining: 0, in_flight: 0 })
    expect(status.team?.usd_per_month).toEqual({ limit: 0.1, used: 0.001, remaining: 0.099, in_flight: 0 })
    // Spent: refused until the day ends, whatever settles meanwhile; the next day it starts again.
    expect(refused(await costly(T0 + 4, 1))).toMatchObject({ kind: 'usd_per_day', used: 1000, final: true, resetsAt: T0 + 12 * 3_600_000 })
    ok(await costly(T0 + 12 * 3_600_000 + 1))
    // A request without a cost passes a spent budget only while it costs nothing.
    ok(await costly(T0 + 12 * 3_600_000 + 2, 0))
    // The tightest budget after admission, for the x-ratelimit-*-usd headers: what is left with it in.
    const next = await costly(T0 + 12 * 3_600_000 + 3, 200)
    expect(next.ok && next.rate.budget).toEqual({ limit: 1000, remaining: 500, resetMs: 24 * 3_600_000 - 3 })
  })

  it('requests per minute slide: the oldest admission frees a place exactly a minute later', async () => {
    const s = [team({ requests_per_minute: 3 })]
    ok(await admit(s, 0, T0))
    ok(await admit(s, 0, T0 + 20_000))
    const third = await admit(s, 0, T0 + 40_000)
    expect(third.ok && third.rate.requests).toEqual({ limit: 3, remaining: 0, resetMs: 20_000 })
    expect(refused(await admit(s, 0, T0 + 59_999))).toMatchObject({ kind: 'requests', limit: 3, used: 3, retryAfterMs: 1, final: false })
    ok(await admit(s, 0, T0 + 60_001))
    expect(refused(await admit(s, 0, T0 + 60_002)).retryAfterMs).toBe(20_000 - 2 + 0)
  })

  it('the token window reported is the tightest that applies: a day or a month quota too, with what is reserved', async () => {
    // (T0 is 12:00 UTC on 10 March: the day ends in 12 h, the month in 21 days and 12 h.)
    const day = [team({ tokens_per_day: 5000 })]
    const first = await admit(day, 1200, T0)
    expect(first.ok && first.rate.tokens).toEqual({ limit: 5000, remaining: 3800, resetMs: 12 * 3_600_000 })
    await settle(ok(first), 1000, T0 + 1000)
    const second = await admit(day, 300, T0 + 2000)
    expect(second.ok && second.rate.tokens).toEqual({ limit: 5000, remaining: 3700, resetMs: 12 * 3_600_000 - 2000 })
    // A minute's bucket with more room than the month left: the month is reported.
    const both = [key({ tokens_per_minute: 100_000, tokens_per_month: 2000 })]
    const third = await admit(both, 500, T0)
    expect(third.ok && third.rate.tokens).toEqual({ limit: 2000, remaining: 1500, resetMs: (21 * 24 + 12) * 3_600_000 })
    // And the bucket, once it is the tighter.
    const tight = [key({ tokens_per_minute: 1000, tokens_per_day: 1_000_000 })]
    const fourth = await admit(tight, 400, T0)
    expect(fourth.ok && fourth.rate.tokens).toMatchObject({ limit: 1000, remaining: 600 })
  })

  it('tokens per minute: a bucket that refills continuously and gets back what was not used', async () => {
    const s = [team({ tokens_per_minute: 1000 })]
    const first = ok(await admit(s, 600, T0))
    const r = refused(await admit(s, 600, T0))
    expect(r).toMatchObject({ kind: 'tokens', limit: 1000, used: 600, requested: 600, retryAfterMs: 12_000, final: false })
    await settle(first, 100, T0)
    const again = await admit(s, 600, T0)
    expect(again.ok && again.rate.tokens).toEqual({ limit: 1000, remaining: 300, resetMs: 42_000 })
    expect(refused(await admit(s, 1001, T0 + 600_000))).toMatchObject({ kind: 'tokens', final: true })
  })

  it('tokens per day count reservations in flight, settle to real usage, and come back at midnight UTC', async () => {
    const s = [team({ tokens_per_day: 1000 })]
    const a = ok(await admit(s, 400, T0))
    const b = ok(await admit(s, 400, T0))
    expect(refused(await admit(s, 400, T0))).toMatchObject({ kind: 'tokens_per_day', used: 800, final: false })
    await settle(a, 300, T0 + 1)
    await settle(b, 300, T0 + 2)
    const c = ok(await admit(s, 400, T0 + 3))
    await settle(c, 400, T0 + 4)
    const spent = refused(await admit(s, 1, T0 + 5))
    const midnight = Date.parse('2026-03-11T00:00:00Z')
    expect(spent).toMatchObject({
      kind: 'tokens_per_day',
      limit: 1000,
      used: 1000,
      requested: 1,
      final: true,
      resetsAt: midnight,
      retryAfterMs: midnight - T0 - 5,
    })
    ok(await admit(s, 1000, midnight))
  })

  it('tokens per month work the same way over the UTC month', async () => {
    const s = [team({ tokens_per_month: 500 })]
    await settle(ok(await admit(s, 500, T0)), 500, T0)
    expect(refused(await admit(s, 1, Date.parse('2026-03-31T23:59:59Z')))).toMatchObject({ kind: 'tokens_per_month', final: true })
    ok(await admit(s, 1, Date.parse('2026-04-01T00:00:00Z')))
  })

  it('concurrency: one slot per request in flight, freed at settlement', async () => {
    const s = [team({ concurrent_requests: 2 })]
    const a = ok(await admit(s, 0, T0))
    ok(await admit(s, 0, T0))
    expect(refused(await admit(s, 0, T0))).toMatchObject({ kind: 'concurrency', limit: 2, used: 2 })
    await settle(a, 0, T0)
    ok(await admit(s, 0, T0))
  })

  it('slots are leases: renewed while in flight, and released when an instance stops renewing', async () => {
    const s = [team({ concurrent_requests: 1, tokens_per_day: 100 })]
    const a = ok(await admit(s, 100, T0))
    await q.renew([a], T0 + LEASE_MS - 1)
    expect(refused(await admit(s, 0, T0 + LEASE_MS + 1)).kind).toBe('concurrency')
    // No renewal after that: the lease lapses and takes its reservation with it.
    ok(await admit(s, 100, T0 + 2 * LEASE_MS))
  })

  it('a renewed lease outlives one admitted after it; each lapses at its own time', async () => {
    const s = [team({ concurrent_requests: 2, tokens_per_day: 1_000 })]
    const a = ok(await admit(s, 100, T0))
    ok(await admit(s, 200, T0 + 1_000))
    await q.renew([a], T0 + LEASE_MS - 1)
    // b (admitted later, never renewed) has lapsed; a holds its slot and its reservation.
    expect((await q.status('ml', s, T0 + LEASE_MS + 1_000)).team).toMatchObject({
      concurrent_requests: { used: 1 },
      tokens_per_day: { in_flight: 100 },
    })
    expect((await q.status('ml', s, T0 + 2 * LEASE_MS - 1)).team).toMatchObject({
      concurrent_requests: { used: 0 },
      tokens_per_day: { in_flight: 0 },
    })
  })

  it('a ticket that went through JSON settles and renews its own leases', async () => {
    const s = [team({ concurrent_requests: 2, tokens_per_day: 1_000 }), key({ concurrent_requests: 2 })]
    const a = ok(await admit(s, 100, T0))
    const b = ok(await admit(s, 200, T0))
    const copy = (t: Ticket) => JSON.parse(JSON.stringify(t)) as Ticket
    await q.renew([copy(b)], T0 + LEASE_MS - 1)
    await settle(copy(a), 50, T0 + 1)
    const status = await q.status('ml', s, T0 + LEASE_MS + 1)
    expect(status.team).toMatchObject({ concurrent_requests: { used: 1 }, tokens_per_day: { used: 50, in_flight: 200 } })
    expect(status['key:key_1']).toMatchObject({ concurrent_requests: { used: 1 } })
  })

  it('a clock that steps back keeps the minute window and the leases in order', async () => {
    const s = [team({ requests_per_minute: 10, concurrent_requests: 5, tokens_per_day: 1_000 })]
    ok(await admit(s, 100, T0 + 1_000))
    ok(await admit(s, 200, T0 + 500)) // (an instance whose clock is half a second behind)
    // 60.6 s in: the admission made at 0.5 s has left the minute and its lease has lapsed (taking
    // its 200 tokens with it); the one made at 1 s has not.
    expect((await q.status('ml', s, T0 + 60_600)).team).toMatchObject({
      requests_per_minute: { used: 1 },
      concurrent_requests: { used: 1 },
      tokens_per_day: { in_flight: 100 },
    })
  })

  it('a minute window holds exactly its last minute over many minutes', async () => {
    // 5 admissions a second against 100 a minute, for three minutes: the first 100 (20 s) pass, the
    // rest of the minute is refused, and a minute after each admitted one a place comes free again:
    // admitted in the first 20 s of every minute, and only then.
    const s = [team({ requests_per_minute: 100 })]
    const outcomes: boolean[] = []
    for (let t = 0; t < 180_000; t += 200) outcomes.push((await admit(s, 0, T0 + t)).ok)
    expect(outcomes).toEqual(Array.from({ length: 900 }, (_, i) => i % 300 < 100))
    expect((await q.status('ml', s, T0 + 180_000 - 200)).team?.requests_per_minute).toEqual({ limit: 100, used: 100, remaining: 0 })
    // The last admitted came at 139.8 s: it counts until a minute has passed, to the millisecond.
    expect((await q.status('ml', s, T0 + 199_799)).team?.requests_per_minute).toMatchObject({ used: 1 })
    expect((await q.status('ml', s, T0 + 199_800)).team?.requests_per_minute).toMatchObject({ used: 0 })
  })

  it('every scope must admit; a refusal by one counts in none', async () => {
    const scopes = [team({ requests_per_minute: 10 }), key({ requests_per_minute: 1 })]
    const first = await admit(scopes, 0, T0)
    expect(first.ok && first.rate.requests).toEqual({ limit: 1, remaining: 0, resetMs: 60_000 })
    expect(refused(await admit(scopes, 0, T0)).scope).toBe("key key_1 of team 'ml'")
    const teamOnly = await admit([team({ requests_per_minute: 10 })], 0, T0)
    expect(teamOnly.ok && teamOnly.rate.requests?.remaining).toBe(8)
  })

  it('a limit of zero refuses for good', async () => {
    expect(refused(await admit([team({ requests_per_minute: 0 })], 0, T0)).final).toBe(true)
  })

  it('admissions and settlements made at once count exactly, each as if it came alone', async () => {
    // Redis sends a team's calls that wait behind one in flight as one script call: here the first
    // goes alone and the other 29 together, with scope lists of two lengths mixed.
    const teamScope = team({ requests_per_minute: 20, tokens_per_day: 1_000_000 })
    const both = [teamScope, key({ concurrent_requests: 6 })]
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => admit(i % 2 === 1 ? both : [teamScope], 100, T0 + i)))
    // In order: the key's six slots go to 1, 3, … 11; odd ones after that find them taken, even
    // ones are admitted until the team's 20th; from then on the team's minute refuses everything.
    const expected = (i: number) => (i === 27 || i >= 28 ? 'requests' : i >= 13 && i % 2 === 1 ? 'concurrency' : 'ok')
    expect(results.map((r) => (r.ok ? 'ok' : r.refusal.kind))).toEqual(Array.from({ length: 30 }, (_, i) => expected(i)))
    const admitted = results.filter((r) => r.ok).map(ok)
    // Each saw the ones before it: the minute's remaining places count down 19 … 0.
    expect(results.filter((r) => r.ok).map((r) => (r.ok ? r.rate.requests?.remaining : null))).toEqual(
      Array.from({ length: 20 }, (_, i) => 19 - i),
    )

    await Promise.all(admitted.map((t, i) => settle(t, 10 + i, T0 + 100)))
    const used = admitted.reduce((sum, _, i) => sum + 10 + i, 0)
    expect(await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-10', groupBy: [] })).toEqual([
      {
        team: 'ml',
        requests: 20,
        prompt_tokens: expect.any(Number),
        completion_tokens: expect.any(Number),
        total_tokens: used,
        estimated_requests: 0,
        cost_usd: (used * 7) / 1e6,
      },
    ])
    const status = await q.status('ml', both, T0 + 100)
    expect(status.team).toMatchObject({ requests_per_minute: { used: 20 }, tokens_per_day: { used, in_flight: 0 } })
    expect(status['key:key_1']).toMatchObject({ concurrent_requests: { used: 0 } })
  })

  it('reservations made at once count against the day at once', async () => {
    const s = [team({ tokens_per_day: 450 })]
    const results = await Promise.all(Array.from({ length: 10 }, () => admit(s, 100, T0)))
    expect(results.map((r) => (r.ok ? 'ok' : `${r.refusal.kind} ${r.refusal.used}`))).toEqual([
      'ok',
      'ok',
      'ok',
      'ok',
      ...Array(6).fill('tokens_per_day 400'),
    ])
    expect((await q.status('ml', s, T0)).team?.tokens_per_day).toMatchObject({ used: 0, in_flight: 400, remaining: 50 })
  })

  // Made at once, the first goes alone and the rest together (with Redis, one script call), their
  // clock times rising through it: each must see the minute and the slots at its own time.
  it('admissions made at once see the minute window slide between them', async () => {
    const s = [team({ requests_per_minute: 10 })]
    for (const now of [T0, T0 + 1_000, T0 + 2_000]) ok(await admit(s, 0, now))
    const results = await Promise.all([T0 + 59_000, T0 + 60_500, T0 + 61_500, T0 + 62_500].map((now) => admit(s, 0, now)))
    // T0, T0 + 1 000 and T0 + 2 000 leave the window one by one as each admitted one joins it: four
    // in the window every time, and the oldest left decides when a place frees.
    expect(results.map((r) => r.ok && r.rate.requests)).toEqual([
      { limit: 10, remaining: 6, resetMs: 1_000 },
      { limit: 10, remaining: 6, resetMs: 500 },
      { limit: 10, remaining: 6, resetMs: 500 },
      { limit: 10, remaining: 6, resetMs: 56_500 },
    ])
  })

  it('admissions made at once see a lease lapse between them', async () => {
    const s = [team({ concurrent_requests: 2 })]
    ok(await admit(s, 0, T0)) // never settled: its instance died, and its lease lapses at T0 + LEASE_MS
    const results = await Promise.all([T0 + LEASE_MS - 10, T0 + LEASE_MS - 5, T0 + LEASE_MS + 1].map((now) => admit(s, 0, now)))
    expect(results.map((r) => (r.ok ? 'ok' : r.refusal.kind))).toEqual(['ok', 'concurrency', 'ok'])
    expect((await q.status('ml', s, T0 + LEASE_MS + 2)).team).toMatchObject({ concurrent_requests: { used: 2 } })
  })

  // Redis sends each scope of a batch once: one whose limits changed between two calls of the
  // batch, or one counted in two days, must still be taken for what each call says.
  it('admissions made at once under limits changed between them are each held to their own', async () => {
    const tight = team({ requests_per_minute: 2, tokens_per_minute: 1_000 })
    const loose = team({ requests_per_minute: 5, tokens_per_minute: 1_000 })
    const results = await Promise.all([tight, tight, tight, loose, tight].map((s, i) => admit([s], 100, T0 + i)))
    expect(results.map((r) => (r.ok ? `ok ${r.rate.requests?.remaining}` : `${r.refusal.kind} ${r.refusal.limit}`))).toEqual([
      'ok 1',
      'ok 0',
      'requests 2',
      'ok 2',
      'requests 2',
    ])
  })

  it('settlements made at once of requests admitted on two days count in each day', async () => {
    const s = [team({ tokens_per_day: 10_000, tokens_per_minute: 5_000 })]
    const late = ok(await admit(s, 100, T0 + 86_400_000 - 43_200_001)) // 2026-03-10, a millisecond before midnight
    const early = ok(await admit(s, 100, T0 + 86_400_000 - 43_200_000)) // 2026-03-11
    const other = ok(await admit(s, 100, T0 + 86_400_000 - 43_200_002)) // 2026-03-10
    await Promise.all([settle(late, 10, T0 + 43_200_000), settle(early, 20, T0 + 43_200_000), settle(other, 40, T0 + 43_200_000)])
    const byDay = await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-11', groupBy: ['day'] })
    expect(byDay.map((r) => [r.day, r.requests, r.total_tokens])).toEqual([
      ['2026-03-10', 2, 50],
      ['2026-03-11', 1, 20],
    ])
    // Per hour, in the hour each was admitted (not the one it settled in).
    const byHour = await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-11', groupBy: ['hour'] })
    expect(byHour.map((r) => [r.hour, r.requests, r.total_tokens])).toEqual([
      ['2026-03-10T23', 2, 50],
      ['2026-03-11T00', 1, 20],
    ])
    expect((await q.status('ml', s, T0 + 43_200_001)).team?.tokens_per_day).toMatchObject({ used: 20, in_flight: 0 })
  })

  it('reports usage grouped and filtered, and the current use of each limit', async () => {
    const s = [team({ tokens_per_day: 10_000, concurrent_requests: 5, requests_per_minute: 100 })]
    await settle(ok(await admit(s, 10, T0)), 100, T0, 'a', 'key_1')
    await settle(ok(await admit(s, 10, T0)), 50, T0, 'b', 'key_2', true)
    await settle(ok(await admit(s, 10, T0 + 86_400_000)), 7, T0 + 86_400_000, 'a', 'key_1')
    const held = ok(await admit(s, 30, T0 + 86_400_000))

    const all = await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-11', groupBy: [] })
    expect(all).toEqual([
      {
        team: 'ml',
        requests: 3,
        prompt_tokens: 25 + 3 + 50,
        completion_tokens: 50 + 25 + 4 - 3 + 3,
        total_tokens: 157,
        estimated_requests: 1,
        cost_usd: 0.001099,
      },
    ])
    const byDayModel = await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-11', groupBy: ['day', 'model'] })
    expect(byDayModel.map((r) => [r.day, r.model, r.total_tokens])).toEqual([
      ['2026-03-10', 'a', 100],
      ['2026-03-10', 'b', 50],
      ['2026-03-11', 'a', 7],
    ])
    const byHourModel = await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-11', groupBy: ['hour', 'model'], key: 'key_1' })
    expect(byHourModel.map((r) => [r.hour, r.model, r.requests, r.total_tokens])).toEqual([
      ['2026-03-10T12', 'a', 1, 100],
      ['2026-03-11T12', 'a', 1, 7],
    ])
    const filtered = await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-10', key: 'key_2', groupBy: ['key'] })
    expect(filtered).toEqual([
      {
        team: 'ml',
        key: 'key_2',
        requests: 1,
        prompt_tokens: 25,
        completion_tokens: 25,
        total_tokens: 50,
        estimated_requests: 1,
        cost_usd: 0.00035,
      },
    ])

    const status = await q.status('ml', s, T0 + 86_400_000 + 1)
    expect(status.team).toEqual({
      requests_per_minute: { limit: 100, used: 2, remaining: 98 },
      tokens_per_day: { limit: 10_000, used: 7, remaining: 10_000 - 7 - 30, in_flight: 30 },
      concurrent_requests: { limit: 5, used: 1, remaining: 4 },
    })
    await settle(held, 0, T0 + 86_400_000 + 2)
  })
})

describe('redis quotas specifics', () => {
  it('a settlement sent twice (its reply lost in an outage) counts once', async () => {
    const q = new RedisQuotas({ client: redis.client, prefix: 'twice:' })
    const scopes = [team({ tokens_per_day: 1_000 })]
    const result = await q.admit({ team: 'ml', requestId: 'once', scopes, tokens: 10, now: T0 })
    if (!result.ok) throw new Error('refused')
    const settlement = {
      ticket: result.ticket,
      keyId: 'key_1',
      model: 'm',
      usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
      estimated: false,
      now: T0,
    }
    await q.settle(settlement)
    await q.settle(settlement)
    expect(await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-10', groupBy: [] })).toEqual([
      { team: 'ml', requests: 1, prompt_tokens: 1, completion_tokens: 2, total_tokens: 3, estimated_requests: 0, cost_usd: 0 },
    ])
    expect((await q.status('ml', scopes, T0)).team?.tokens_per_day).toMatchObject({ used: 3 })
  })
})
