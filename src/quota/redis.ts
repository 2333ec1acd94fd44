import { LRUCache } from 'lru-cache'
import { BatchedScript } from '../redis/batch.js'
import type { RedisClient } from '../redis/connection.js'
import { RedisKeys } from '../redis/keys.js'
import { LuaScript } from '../redis/scripts.js'
import { daysBetween, dayEnd, monthEnd, utcDay, utcHour, utcMonth } from './periods.js'
import { AdmitCalls, SettleCalls } from './redis-calls.js'
import { aggregateUsage, HOURLY_RETENTION_DAYS, usageField } from './report.js'
import { describeStatus, refill } from './status.js'
import {
  LEASE_MS,
  MINUTE_MS,
  type Admission,
  type AdmitResult,
  type LimitKind,
  type QuotaEngine,
  type RateState,
  type Scope,
  type ScopeStatus,
  type Settlement,
  type Ticket,
  type UsageQuery,
  type UsageRow,
} from './types.js'

/**
 * Quotas in Redis, exact across any number of gateway instances: each admission is one run of a Lua
 * script (every check of every scope, then every write, in one round trip), each settlement
 * another. Under load a team's admissions that arrive while one of its script calls is in flight
 * go out together as one call, as do its settlements (redis/batch.ts); the script still takes them
 * one after another, each as if alone. Key names: redis/keys.ts.
 *
 * Why not @fastify/rate-limit for the request rate: its Redis store counts a fixed window
 * (INCR + PEXPIRE), which lets twice the limit through across a window boundary, and a separate
 * call for it would cost a second round trip and could not be atomic with the token and
 * concurrency checks: a request it counted could still be refused by the token check. The gateway
 * uses @fastify/rate-limit where its model fits: failed authentications per client IP.
 */

const DAY_MS = 86_400_000

export interface RedisQuotasOptions {
  client: RedisClient
  prefix?: string
  /** How long usage counters are kept. */
  usageRetentionDays?: number
}

export class RedisQuotas implements QuotaEngine {
  private readonly client: RedisClient
  private readonly names: RedisKeys
  private readonly retentionMs: number
  private readonly admitScript: BatchedScript<AdmitCalls>
  private readonly settleScript: BatchedScript<SettleCalls>
  /** Per team, the request ids of settlements answered since its last settlement batch went out. */
  private readonly answered = new Map<string, string[]>()
  /** Each scope's key names for a day (team, tab, scope id), for the scopes seen most recently. */
  private readonly keyNames = new LRUCache<string, { day: string; names: string[] }>({ max: 10_000 })

  constructor(options: RedisQuotasOptions) {
    this.client = options.client
    this.names = new RedisKeys(options.prefix)
    this.retentionMs = (options.usageRetentionDays ?? 400) * DAY_MS
    this.admitScript = new BatchedScript(new LuaScript(this.client, 'admit'), () => new AdmitCalls())
    const settledKey = (team: string) => this.teamKey(team, 'settled')
    const takeAnswered = (team: string) => this.takeAnswered(team)
    this.settleScript = new BatchedScript(new LuaScript(this.client, 'settle'), () => new SettleCalls(settledKey, takeAnswered))
  }

  private teamKey(team: string, suffix: string): string {
    return this.names.team(team, suffix)
  }

  /**
   * A scope's six keys for a day, in the scripts' order (rpm, tpm, day, month, inflight, reserved).
   * Made once per scope and day, not twice per request: twelve new strings per request were a
   * visible part of the garbage the Redis path made. The same array comes back while the scope
   * and day stay in the cache, which lets a batch find its scopes by identity (ScopeTable).
   */
  private scopeKeys(team: string, scope: Scope, day: string, month: string): readonly string[] {
    const id = `${team}\t${scope.id}`
    let made = this.keyNames.get(id)
    if (made === undefined || made.day !== day) {
      const base = this.teamKey(team, `${scope.id}:`)
      made = { day, names: [`${base}rpm`, `${base}tpm`, `${base}d:${day}`, `${base}m:${month}`, `${base}inflight`, `${base}reserved`] }
      this.keyNames.set(id, made)
    }
    return made.names
  }

  /**
   * Admissions and settlements of a team go out as separate batched script calls, so an admission
   * can reach Redis before a settlement this instance made earlier (one waiting for its team's
   * batch, or resent after NOSCRIPT): a client whose last answer is complete could be refused for a
   * slot or tokens that answer still held. So a refusal that settlements can lift, made while this
   * instance's earlier settlements of the team were unanswered, is decided again once they are in.
   * Nothing waits on the way to an admission; only such refusals pay a second round trip.
   * (A settlement another instance made can still arrive after the admission: about 0.5 % of a
   * team's requests at its concurrency limit, with three instances taking requests in turn;
   * bench/slots.ts measures it.)
   */
  async admit(a: Admission): Promise<AdmitResult> {
    const settling = this.settleScript.pending(a.team)
    const result = await this.admitOnce(a)
    if (result.ok || settling === null || result.refusal.final || result.refusal.kind === 'requests') return result
    await settling
    return this.admitOnce(a)
  }

  private async admitOnce(a: Admission): Promise<AdmitResult> {
    const day = utcDay(a.now)
    const month = utcMonth(a.now)
    const reply = (await this.admitScript.call(a.team, (batch) => {
      batch.args.push(a.now, a.requestId, a.tokens, a.now + LEASE_MS, dayEnd(a.now), monthEnd(a.now), a.scopes.length)
      for (const s of a.scopes) batch.args.push(batch.scopes.place(this.scopeKeys(a.team, s, day, month), s.limits))
      batch.args.push(a.cost ?? 0)
    })) as (number | string)[]
    if (Number(reply[0]) === 1) {
      const [, rl, rr, rt, tl, tr, tt, bl, br, bt] = reply.map(Number) as number[]
      const rate: RateState = {}
      if (rl! >= 0) rate.requests = { limit: rl!, remaining: rr!, resetMs: rt! }
      if (tl! >= 0) rate.tokens = { limit: tl!, remaining: tr!, resetMs: tt! }
      if (bl! >= 0) rate.budget = { limit: bl!, remaining: br!, resetMs: bt! }
      return {
        ok: true,
        rate,
        ticket: {
          team: a.team,
          requestId: a.requestId,
          scopes: a.scopes,
          tokens: a.tokens,
          cost: a.cost ?? 0,
          day,
          month,
          hour: utcHour(a.now),
        },
      }
    }
    const [, index, kind, limit, used, retry, final] = reply
    const scope = a.scopes[Number(index) - 1]!
    const k = String(kind) as LimitKind
    const daily = k === 'tokens_per_day' || k === 'usd_per_day'
    const monthly = k === 'tokens_per_month' || k === 'usd_per_month'
    const resetsAt = daily ? dayEnd(a.now) : monthly ? monthEnd(a.now) : undefined
    return {
      ok: false,
      refusal: {
        kind: k,
        scope: scope.label,
        limit: Number(limit),
        used: Number(used),
        requested: k === 'requests' || k === 'concurrency' ? 1 : k === 'usd_per_day' || k === 'usd_per_month' ? (a.cost ?? 0) : a.tokens,
        retryAfterMs: Number(retry),
        final: Number(final) === 1,
        ...(Number(final) === 1 && resetsAt !== undefined ? { resetsAt } : {}),
      },
    }
  }

  async settle(s: Settlement): Promise<void> {
    const { ticket, usage } = s
    const admittedAt = Date.parse(`${ticket.day}T00:00:00Z`)
    // Relative TTLs: the gateway's clock (injectable) decides the periods, Redis's only counts down.
    const ttl = (until: number) => Math.max(1_000, until - s.now)
    await this.settleScript.call(ticket.team, (batch) => {
      const args = batch.args
      args.push(
        s.now,
        ticket.requestId,
        ticket.tokens,
        usage.total_tokens,
        ttl(dayEnd(admittedAt) + DAY_MS),
        ttl(monthEnd(admittedAt) + DAY_MS),
        ticket.scopes.length,
      )
      for (const scope of ticket.scopes)
        args.push(batch.scopes.place(this.scopeKeys(ticket.team, scope, ticket.day, ticket.month), scope.limits))
      args.push(
        batch.usage(ticket.day, () => [
          this.teamKey(ticket.team, `usage:${ticket.day}`),
          this.teamKey(ticket.team, `usage:${ticket.day}:h`),
        ]),
        usageField(s.keyId, s.model, s.endUser),
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        s.estimated ? 1 : 0,
        ttl(admittedAt + this.retentionMs),
        s.costMicros ?? 0,
        ticket.hour ?? utcHour(s.now),
        ttl(admittedAt + Math.min(this.retentionMs, HOURLY_RETENTION_DAYS * DAY_MS)),
      )
      batch.team = ticket.team
    })
    // Answered: it will not be sent again, so the team's next batch takes it out of the settled set.
    const answered = this.answered.get(ticket.team)
    if (answered === undefined) this.answered.set(ticket.team, [ticket.requestId])
    else answered.push(ticket.requestId)
  }

  /**
   * The request ids of a team's answered settlements not yet taken out of its settled set, handed
   * to the batch going out. (Should that batch fail, they stay in the set until they are older than
   * SETTLED_MARKER_MS, redis-calls.ts: nothing counts twice, the set only holds them longer.)
   */
  private takeAnswered(team: string): string[] {
    const ids = this.answered.get(team)
    if (ids === undefined) return []
    this.answered.delete(team)
    return ids
  }

  /**
   * At shutdown: takes the settlements answered since each team's last batch out of its settled
   * set, which no later batch of this instance will (otherwise they stay six hours).
   */
  async shutdown(): Promise<void> {
    await this.settleScript.drained()
    const teams = [...this.answered.keys()]
    // One call per team: its keys share a slot on a Redis Cluster.
    await Promise.all(teams.map((team) => this.client.zrem(this.teamKey(team, 'settled'), ...this.takeAnswered(team))))
  }

  async renew(tickets: Ticket[], now: number): Promise<void> {
    // One pipeline per team: a pipeline on a cluster must stay within one slot.
    const byTeam = new Map<string, Ticket[]>()
    for (const t of tickets) byTeam.set(t.team, [...(byTeam.get(t.team) ?? []), t])
    await Promise.all(
      [...byTeam].map(([team, list]) => {
        const pipeline = this.client.pipeline()
        for (const t of list) {
          for (const scope of t.scopes) {
            const inflight = this.teamKey(team, `${scope.id}:inflight`)
            pipeline.zadd(inflight, 'XX', now + LEASE_MS, t.requestId)
            pipeline.pexpire(inflight, LEASE_MS + MINUTE_MS)
            pipeline.pexpire(this.teamKey(team, `${scope.id}:reserved`), LEASE_MS + MINUTE_MS)
          }
        }
        return pipeline.exec()
      }),
    )
  }

  async status(team: string, scopes: Scope[], now: number): Promise<Record<string, ScopeStatus>> {
    if (scopes.length === 0) return {}
    const day = utcDay(now)
    const month = utcMonth(now)
    const pipeline = this.client.pipeline()
    const reservedKeys: string[] = []
    for (const scope of scopes) {
      const [rpm, tpm, d, m, inflight, reserved] = this.scopeKeys(team, scope, day, month) as [
        string,
        string,
        string,
        string,
        string,
        string,
      ]
      reservedKeys.push(reserved)
      pipeline.zcount(rpm, `(${now - MINUTE_MS}`, '+inf')
      pipeline.hmget(tpm, 'level', 'ts')
      pipeline.hmget(d, 'used', 'spent')
      pipeline.hmget(m, 'used', 'spent')
      pipeline.zcount(inflight, `(${now}`, '+inf')
      pipeline.hmget(reserved, '_sum', '$_sum')
      pipeline.zrangebyscore(inflight, '-inf', String(now)) // lapsed leases the next admission will clear
    }
    const results = ((await pipeline.exec()) ?? []).map(([err, value]) => {
      if (err) throw err
      return value
    })
    // A lapsed lease's reservation is in _sum until an admission clears it: it is not in flight.
    const lapsed = this.client.pipeline()
    scopes.forEach((_, i) => {
      const ids = results[i * 7 + 6] as string[]
      if (ids.length > 0) lapsed.hmget(reservedKeys[i]!, ...ids, ...ids.map((id) => `$${id}`))
    })
    // Per scope with lapsed leases: [their tokens, their micro-dollars].
    const lapsedHeld = ((await lapsed.exec()) ?? []).map(([err, value]) => {
      if (err) throw err
      const amounts = (value as (string | null)[]).map((v) => Number(v ?? 0))
      const half = amounts.length / 2
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)
      return [sum(amounts.slice(0, half)), sum(amounts.slice(half))] as const
    })
    const out: Record<string, ScopeStatus> = {}
    scopes.forEach((scope, i) => {
      const [requests, bucket, d, m, inflight, reserved, ids] = results.slice(i * 7, i * 7 + 7) as [
        number,
        (string | null)[],
        (string | null)[],
        (string | null)[],
        number,
        (string | null)[],
        string[],
      ]
      const [gone, goneCost] = ids.length > 0 ? lapsedHeld.shift()! : [0, 0]
      out[scope.id] = describeStatus(scope.limits, {
        requests,
        tokensMinute: (limit) => {
          if (bucket[0] === null || bucket[0] === undefined) return 0
          return Math.ceil(limit - refill(Number(bucket[0]), Number(bucket[1]), limit, now))
        },
        day: Number(d[0] ?? 0),
        month: Number(m[0] ?? 0),
        inflight,
        reserved: Math.max(0, Number(reserved[0] ?? 0) - gone),
        spentDay: Number(d[1] ?? 0),
        spentMonth: Number(m[1] ?? 0),
        reservedCost: Math.max(0, Number(reserved[1] ?? 0) - goneCost),
      })
    })
    return out
  }

  async usage(q: UsageQuery): Promise<UsageRow[]> {
    const days = daysBetween(q.from, q.to)
    const sources = await Promise.all(
      q.teams.map(async (team) => {
        const pipeline = this.client.pipeline()
        const suffix = q.groupBy.includes('hour') ? ':h' : ''
        for (const day of days) pipeline.hgetall(this.teamKey(team, `usage:${day}${suffix}`))
        const results = (await pipeline.exec()) ?? []
        return results.map(([err, value], i) => {
          if (err) throw err
          return {
            team,
            day: days[i]!,
            fields: Object.entries(value as Record<string, string>).map(([f, v]) => [f, Number(v)] as [string, number]),
          }
        })
      }),
    )
    return aggregateUsage(sources.flat(), q)
  }
}
