import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { RedisQuotas } from '../../src/quota/redis.js'
import { LEASE_MS, MINUTE_MS, type AdmitResult, type Scope, type Ticket } from '../../src/quota/types.js'
import { useRedis } from '../helpers/redis.js'

/**
 * The Redis quota engine's own concerns: every key its scripts write expires, with the deadline
 * its period needs, however many settlements touch it after the first (which alone sets a
 * counter's expiry); how its script calls go out (alone when nothing of the team's is in flight,
 * batched behind one that is), and that they keep working after Redis has lost the scripts.
 */

const redis = useRedis()
const T0 = Date.parse('2026-03-10T12:00:00Z')
const HOUR = 3_600_000
const DAY = 24 * HOUR
const limits = {
  requests_per_minute: 10,
  tokens_per_minute: 10_000,
  tokens_per_day: 1_000_000,
  tokens_per_month: 10_000_000,
  concurrent_requests: 5,
}
const scopes: Scope[] = [
  { id: 'team', label: "team 'ml'", limits },
  { id: 'key:key_1', label: "key key_1 of team 'ml'", limits },
]

function ok(result: AdmitResult): Ticket {
  if (!result.ok) throw new Error(`refused: ${JSON.stringify(result.refusal)}`)
  return result.ticket
}

describe('keys written by the Redis quota scripts', () => {
  it('all expire, each with its period’s deadline, and later settlements keep those deadlines', async () => {
    const prefix = 'ttl:'
    const q = new RedisQuotas({ client: redis.client, prefix, usageRetentionDays: 400 })
    const usage = (total: number) => ({ prompt_tokens: total / 2, completion_tokens: total / 2, total_tokens: total })
    const first = ok(await q.admit({ team: 'ml', requestId: 'r1', scopes, tokens: 100, now: T0 }))
    await q.settle({ ticket: first, keyId: 'key_1', model: 'm', usage: usage(100), estimated: false, now: T0 + 1_000 })
    const second = ok(await q.admit({ team: 'ml', requestId: 'r2', scopes, tokens: 100, now: T0 + 2_000 }))
    // Nothing used this time, and estimated: the counters' values do not reach back to "new".
    await q.settle({ ticket: second, keyId: 'key_1', model: 'm', usage: usage(0), estimated: true, now: T0 + 3_000 })

    const keys = (await redis.client.keys(`${prefix}*`)).sort()
    const ttls = Object.fromEntries(await Promise.all(keys.map(async (k) => [k.slice(prefix.length), await redis.client.pttl(k)] as const)))
    // The settlement ran 1 to 3 s of the injected clock after T0 (12:00 UTC); Redis counts down from
    // when each command ran, so allow the test's own few seconds of real time below each deadline.
    const near = (ms: number) => expect.toSatisfy((ttl: number) => ttl > ms - 10_000 && ttl <= ms)
    const perScope = (scope: string) => ({
      [`{t:ml}:${scope}:rpm`]: near(MINUTE_MS),
      [`{t:ml}:${scope}:tpm`]: near(2 * MINUTE_MS),
      [`{t:ml}:${scope}:d:2026-03-10`]: near(12 * HOUR + DAY - 1_000), // the day's end, plus a day
      [`{t:ml}:${scope}:m:2026-03`]: near(Date.parse('2026-04-01T00:00:00Z') + DAY - T0 - 1_000),
      [`{t:ml}:${scope}:reserved`]: near(LEASE_MS + MINUTE_MS),
    })
    expect(ttls).toEqual({
      ...perScope('team'),
      ...perScope('key:key_1'),
      // (each scope's in-flight set is empty again, so gone)
      '{t:ml}:usage:2026-03-10': near(400 * DAY - 12 * HOUR - 1_000),
      // the hourly counters are kept for 35 days
      '{t:ml}:usage:2026-03-10:h': near(35 * DAY - 12 * HOUR - 1_000),
      // (r1's reply came, so the second settlement took it out; r2 waits for the next one)
      '{t:ml}:settled': near(6 * HOUR),
    })
    expect(await redis.client.zrange(`${prefix}{t:ml}:settled`, 0, -1)).toEqual(['r2'])

    // The counters themselves: the estimated count is written only when there is one.
    expect(await redis.client.hgetall(`${prefix}{t:ml}:usage:2026-03-10`)).toEqual({
      'key_1\tm\tr': '2',
      'key_1\tm\tp': '50',
      'key_1\tm\tc': '50',
      'key_1\tm\tt': '100',
      'key_1\tm\te': '1',
    })
    // The same per hour of admission (12 UTC).
    expect(await redis.client.hgetall(`${prefix}{t:ml}:usage:2026-03-10:h`)).toEqual({
      '12\tkey_1\tm\tr': '2',
      '12\tkey_1\tm\tp': '50',
      '12\tkey_1\tm\tc': '50',
      '12\tkey_1\tm\tt': '100',
      '12\tkey_1\tm\te': '1',
    })
    expect(await redis.client.hget(`${prefix}{t:ml}:team:d:2026-03-10`, 'used')).toBe('100')
  })
})

describe('the settled set (a settlement sent twice counts once)', () => {
  const scope: Scope[] = [{ id: 'team', label: "team 'ml'", limits: { requests_per_minute: 1000, concurrent_requests: 100 } }]
  const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
  const settleOne = async (q: RedisQuotas, requestId: string, now: number) =>
    q.settle({
      ticket: ok(await q.admit({ team: 'ml', requestId, scopes: scope, tokens: 0, now })),
      keyId: 'k',
      model: 'm',
      usage,
      estimated: false,
      now,
    })
  const members = (prefix: string) => redis.client.zrange(`${prefix}{t:ml}:settled`, 0, -1)
  const requests = async (q: RedisQuotas) =>
    (await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-10', groupBy: [] }))[0]?.requests

  it('holds only the settlements whose replies have not come, not every request of the last hours', async () => {
    const q = new RedisQuotas({ client: redis.client, prefix: 'held:' })
    for (let i = 0; i < 50; i++) await settleOne(q, `s${i}`, T0 + i)
    // Each batch takes out the ones answered before it: only the last waits.
    expect(await members('held:')).toEqual(['s49'])
    // Many at once: the first goes alone and the rest in one batch behind it; the next batch
    // takes all of them out.
    await Promise.all(Array.from({ length: 40 }, (_, i) => settleOne(q, `m${i}`, T0 + 100)))
    await settleOne(q, 'last', T0 + 200)
    expect(await members('held:')).toEqual(['last'])
    expect(await requests(q)).toBe(91)
  })

  it('counts a settlement sent again once, through whichever instance', async () => {
    const first = new RedisQuotas({ client: redis.client, prefix: 'again:' })
    const other = new RedisQuotas({ client: redis.client, prefix: 'again:' })
    const ticket = ok(await first.admit({ team: 'ml', requestId: 'a1', scopes: scope, tokens: 0, now: T0 }))
    const settlement = { ticket, keyId: 'k', model: 'm', usage, estimated: false, now: T0 }
    await first.settle(settlement)
    // As a replay from a usage buffer would, after a reply lost: the first instance never learnt
    // it was answered, so a1 is still in the set.
    await other.settle(settlement)
    expect(await requests(other)).toBe(1)
    expect(await members('again:')).toEqual(['a1'])
  })

  it('is left empty by an instance that shuts down: it takes out what it answered since its last batch', async () => {
    const q = new RedisQuotas({ client: redis.client, prefix: 'closing:' })
    await settleOne(q, 'c1', T0)
    await settleOne(q, 'c2', T0 + 1)
    expect(await members('closing:')).toEqual(['c2'])
    // One whose reply has not come yet when the shutdown begins is waited for.
    const ticket = ok(await q.admit({ team: 'ml', requestId: 'c3', scopes: scope, tokens: 0, now: T0 + 2 }))
    const last = q.settle({ ticket, keyId: 'k', model: 'm', usage, estimated: false, now: T0 + 2 })
    await q.shutdown()
    await last
    expect(await members('closing:')).toEqual([])
    await q.shutdown() // nothing left to take out: no call
    expect(await requests(q)).toBe(3)
  })

  it('lets one whose instance stopped before taking it out leave six hours on', async () => {
    const stopped = new RedisQuotas({ client: redis.client, prefix: 'orphan:' })
    const other = new RedisQuotas({ client: redis.client, prefix: 'orphan:' })
    await settleOne(stopped, 'o1', T0)
    await settleOne(other, 'o2', T0 + 6 * HOUR - 1)
    expect(await members('orphan:')).toEqual(['o1', 'o2'])
    // The team's next batch six hours after o1 takes it out (o2, answered, too).
    await settleOne(other, 'o3', T0 + 6 * HOUR)
    expect(await members('orphan:')).toEqual(['o3'])
    expect(await redis.client.pttl('orphan:{t:ml}:settled')).toSatisfy((ttl: number) => ttl > 6 * HOUR - 10_000 && ttl <= 6 * HOUR)
  })
})

describe('the scripts, sent alone or batched', () => {
  it('still run after Redis has lost them (SCRIPT FLUSH, as after a restart), alone and many at once', async () => {
    // As the gateway connects: auto-pipelining on, so both ways of sending are used.
    const client = new Redis(redis.server.url, { enableAutoPipelining: true })
    const q = new RedisQuotas({ client, prefix: 'flush:' })
    const scope: Scope[] = [{ id: 'team', label: "team 'ml'", limits: { requests_per_minute: 1000, concurrent_requests: 100 } }]
    let seq = 0
    const round = async () => {
      const ticket = ok(await q.admit({ team: 'ml', requestId: `f${++seq}`, scopes: scope, tokens: 0, now: T0 }))
      await q.settle({
        ticket,
        keyId: 'key_1',
        model: 'm',
        usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        estimated: false,
        now: T0,
      })
    }
    await redis.client.script('FLUSH')
    await round() // nothing else in flight: sent at once
    await redis.client.script('FLUSH')
    await Promise.all(Array.from({ length: 20 }, round)) // the first alone, the rest batched behind it
    const rows = await q.usage({ teams: ['ml'], from: '2026-03-10', to: '2026-03-10', groupBy: [] })
    expect(rows).toEqual([
      { team: 'ml', requests: 21, prompt_tokens: 21, completion_tokens: 21, total_tokens: 42, estimated_requests: 0, cost_usd: 0 },
    ])
    const status = await q.status('ml', scope, T0)
    expect(status.team).toMatchObject({ requests_per_minute: { used: 21 }, concurrent_requests: { used: 0 } })
    client.disconnect()
  })

  it('under load, one script call carries the calls of a team that wait behind one in flight, and never two teams', async () => {
    const q = new RedisQuotas({ client: redis.client, prefix: 'batch:' })
    const scope: Scope[] = [{ id: 'team', label: 'team', limits: { requests_per_minute: 1000 } }]
    const calls = async () => {
      const line = (await redis.client.info('commandstats')).split('\r\n').find((l) => l.startsWith('cmdstat_evalsha:'))
      return Number(/calls=(\d+)/.exec(line ?? '')?.[1] ?? 0)
    }
    const before = await calls()
    // 32 admissions each for two teams, interleaved, all made in one go.
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) => q.admit({ team: i % 2 ? 'a' : 'b', requestId: `b${i}`, scopes: scope, tokens: 0, now: T0 })),
    )
    // Per team: the first alone, the other 31 in one call. Each still counted as if alone.
    expect(await calls()).toBe(before + 4)
    for (const team of ['a', 'b']) {
      const mine = results.filter((_, i) => (i % 2 ? 'a' : 'b') === team)
      expect(mine.map((r) => (r.ok ? r.rate.requests?.remaining : 'refused'))).toEqual(Array.from({ length: 32 }, (_, i) => 999 - i))
    }
    // The keys written at the end of the batch live as long as when written one by one.
    const near = (ms: number) => expect.toSatisfy((ttl: number) => ttl > ms - 10_000 && ttl <= ms)
    for (const team of ['a', 'b']) {
      expect(await redis.client.pttl(`batch:{t:${team}}:team:rpm`)).toEqual(near(MINUTE_MS))
      expect(await redis.client.pttl(`batch:{t:${team}}:team:inflight`)).toEqual(near(LEASE_MS + MINUTE_MS))
      expect(await redis.client.pttl(`batch:{t:${team}}:team:reserved`)).toEqual(near(LEASE_MS + MINUTE_MS))
      expect(await redis.client.zcard(`batch:{t:${team}}:team:inflight`)).toBe(32)
    }
    // A settlement made alone goes alone.
    await q.settle({
      ticket: ok(results[0]!),
      keyId: 'k',
      model: 'm',
      usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
      estimated: false,
      now: T0,
    })
    expect(await calls()).toBe(before + 5)
  })

  it('a batch sends each of its scopes once: its keys and limits, not a copy per call', async () => {
    const q = new RedisQuotas({ client: redis.client, prefix: 'wire:' })
    const scope: Scope[] = [{ id: 'team', label: 'team', limits: { requests_per_minute: 1000, concurrent_requests: 100 } }]
    await redis.client.config('SET', 'slowlog-log-slower-than', '0')
    await redis.client.slowlog('RESET')
    try {
      const tickets = (
        await Promise.all(
          Array.from({ length: 32 }, (_, i) => q.admit({ team: 'ml', requestId: `w${i}`, scopes: scope, tokens: 0, now: T0 })),
        )
      ).map(ok)
      const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
      await Promise.all(tickets.map((ticket) => q.settle({ ticket, keyId: 'k', model: 'm', usage, estimated: false, now: T0 + 1 })))
      // Slowlog keeps a command's first 31 arguments and then "... (N more arguments)".
      const entries = (await redis.client.slowlog('GET', 1000)) as [number, number, number, string[]][]
      const sizes = entries
        .map(([, , , args]) => args)
        .filter((args) => args[0]?.toLowerCase() === 'evalsha')
        .map((args) => {
          const more = /\((\d+) more arguments\)/.exec(args.at(-1)!)
          return more ? args.length - 1 + Number(more[1]) : args.length
        })
        .sort((a, b) => a - b)
      // The first admission and the first settlement go alone; the other 31 of each in one call.
      // Admission: EVALSHA, sha, key count, the scope's 6 keys, count, scopes, its 7 limits, then
      // per admission 7 values, its scope's place and its cost. Settlement: the same 6 keys, one usage hash
      // and its hourly one, and the team's settled set; count, scopes, hashes, the scope's tpm limit, then per
      // settlement 7 values, its scope's place, its hash's place and 9 usage values; then how long
      // the set remembers. (The lone first settlement's id, answered, goes with the team's next
      // batch: its reply came after this one went out.)
      const admissions = 3 + 6 + 2 + 7 + 31 * (7 + 1 + 1)
      const settlements = 3 + 6 + 2 + 1 + 3 + 1 + 31 * (7 + 1 + 1 + 9) + 1
      expect(sizes.slice(-2)).toEqual([admissions, settlements].sort((a, b) => a - b))
    } finally {
      await redis.client.config('SET', 'slowlog-log-slower-than', '10000')
    }
  })

  it('an admission is not refused for a slot that a settlement made before it frees, though that settlement waits for its batch', async () => {
    const q = new RedisQuotas({ client: redis.client, prefix: 'order:' })
    const slot = (key: string): Scope[] => [{ id: `key:${key}`, label: `key ${key}`, limits: { concurrent_requests: 1 } }]
    const usage = { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 }
    const other = ok(await q.admit({ team: 'ml', requestId: 'o1', scopes: slot('k2'), tokens: 0, now: T0 }))
    const first = ok(await q.admit({ team: 'ml', requestId: 'f1', scopes: slot('k1'), tokens: 0, now: T0 }))
    // In one turn: the team's first settlement goes out at once, the second (which frees k1's slot)
    // waits for it to be answered, and the admission goes out at once (none of the team's is in
    // flight), so it reaches Redis before the settlement that was made before it.
    const settled = Promise.all(
      [other, first].map((ticket) => q.settle({ ticket, keyId: 'k', model: 'm', usage, estimated: false, now: T0 + 1 })),
    )
    const next = q.admit({ team: 'ml', requestId: 'f2', scopes: slot('k1'), tokens: 0, now: T0 + 2 })
    await settled
    expect((await next).ok).toBe(true)
    // A refusal no settlement can lift still comes: k1's slot is taken again.
    const refused = await q.admit({ team: 'ml', requestId: 'f3', scopes: slot('k1'), tokens: 0, now: T0 + 3 })
    expect(refused).toMatchObject({ ok: false, refusal: { kind: 'concurrency', limit: 1, used: 1 } })
  })

  it('a batch that fails fails each of its calls, and the team’s next calls go out again', async () => {
    const q = new RedisQuotas({ client: redis.client, prefix: 'broken:' })
    const scope: Scope[] = [{ id: 'team', label: 'team', limits: { requests_per_minute: 1000 } }]
    const admit = (i: number) => q.admit({ team: 'ml', requestId: `x${i}`, scopes: scope, tokens: 0, now: T0 })
    await redis.client.set('broken:{t:ml}:team:rpm', 'not a sorted set')
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => admit(i)))
    expect(results.map((r) => r.status)).toEqual(Array(10).fill('rejected'))
    expect(String((results[5] as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/)
    await redis.client.del('broken:{t:ml}:team:rpm')
    const again = await Promise.all(Array.from({ length: 5 }, (_, i) => admit(10 + i)))
    expect(again.map((r) => (r.ok ? r.rate.requests?.remaining : 'refused'))).toEqual([999, 998, 997, 996, 995])
  })
})
