import { daysBetween, dayEnd, monthEnd, utcDay, utcMonth } from './periods.js'
import { aggregateUsage, USAGE_METRICS, usageField } from './report.js'
import { describeStatus, refill } from './status.js'
import {
  LEASE_MS,
  MINUTE_MS,
  type Admission,
  type AdmitResult,
  type AuditEntry,
  type QuotaEngine,
  type RateState,
  type Refusal,
  type Scope,
  type ScopeStatus,
  type Settlement,
  type Ticket,
  type UsageQuery,
  type UsageRow,
} from './types.js'

/**
 * Quotas for the embedded store, in this process's memory. The same rules as the Lua scripts of
 * RedisQuotas (one contract suite checks both): a sliding one-minute log for requests, a token
 * bucket refilling continuously for tokens per minute, UTC day and month counters with the
 * reservations of requests in flight, and leases for concurrency.
 */

interface Lease {
  expires: number
  tokens: number
}

interface Bucket {
  level: number
  ts: number
}

export class MemoryQuotas implements QuotaEngine {
  private readonly rpm = new Map<string, { t: number; id: string }[]>()
  private readonly tpm = new Map<string, Bucket>()
  private readonly used = new Map<string, number>()
  private readonly inflight = new Map<string, Map<string, Lease>>()
  /** team → day → key and model → [requests, prompt, completion, total, estimated] */
  private readonly usageByDay = new Map<string, Map<string, Map<string, number[]>>>()

  private leases(key: string, now: number): Map<string, Lease> {
    let leases = this.inflight.get(key)
    if (!leases) this.inflight.set(key, (leases = new Map()))
    for (const [id, lease] of leases) if (lease.expires <= now) leases.delete(id)
    return leases
  }

  private window(key: string, now: number): { t: number; id: string }[] {
    const log = (this.rpm.get(key) ?? []).filter((e) => e.t > now - MINUTE_MS)
    this.rpm.set(key, log)
    return log
  }

  private bucket(key: string, limit: number, now: number): Bucket {
    const b = this.tpm.get(key)
    return { level: b ? refill(b.level, b.ts, limit, now) : limit, ts: now }
  }

  private check(team: string, scope: Scope, tokens: number, now: number): Refusal | null {
    const key = `${team}\u0000${scope.id}`
    const { limits } = scope
    const leases = this.leases(key, now)
    const refuse = (r: Omit<Refusal, 'scope'>): Refusal => ({ ...r, scope: scope.label })

    if (limits.concurrent_requests !== undefined && leases.size + 1 > limits.concurrent_requests) {
      return refuse({ kind: 'concurrency', limit: limits.concurrent_requests, used: leases.size, requested: 1, retryAfterMs: 1000, final: false })
    }
    if (limits.requests_per_minute !== undefined) {
      const log = this.window(key, now)
      if (log.length + 1 > limits.requests_per_minute) {
        const oldest = log[0]?.t ?? now
        return refuse({ kind: 'requests', limit: limits.requests_per_minute, used: log.length, requested: 1, retryAfterMs: Math.max(1, oldest + MINUTE_MS - now), final: limits.requests_per_minute === 0 })
      }
    }
    if (limits.tokens_per_minute !== undefined) {
      const limit = limits.tokens_per_minute
      const b = this.bucket(key, limit, now)
      if (tokens > limit) return refuse({ kind: 'tokens', limit, used: Math.max(0, Math.ceil(limit - b.level)), requested: tokens, retryAfterMs: 0, final: true })
      if (tokens > b.level) {
        return refuse({ kind: 'tokens', limit, used: Math.ceil(limit - b.level), requested: tokens, retryAfterMs: Math.ceil(((tokens - b.level) * MINUTE_MS) / limit), final: false })
      }
    }
    const reserved = [...leases.values()].reduce((sum, l) => sum + l.tokens, 0)
    for (const [kind, limit, period, end] of [
      ['tokens_per_day', limits.tokens_per_day, `d:${utcDay(now)}`, dayEnd(now)],
      ['tokens_per_month', limits.tokens_per_month, `m:${utcMonth(now)}`, monthEnd(now)],
    ] as const) {
      if (limit === undefined) continue
      const used = this.used.get(`${key}\u0000${period}`) ?? 0
      if (used + tokens > limit) return refuse({ kind, limit, used, requested: tokens, retryAfterMs: end - now, final: true, resetsAt: end })
      if (used + reserved + tokens > limit) return refuse({ kind, limit, used: used + reserved, requested: tokens, retryAfterMs: 1000, final: false })
    }
    return null
  }

  async admit(a: Admission): Promise<AdmitResult> {
    for (const scope of a.scopes) {
      const refusal = this.check(a.team, scope, a.tokens, a.now)
      if (refusal) return { ok: false, refusal }
    }
    const rate: RateState = {}
    for (const scope of a.scopes) {
      const key = `${a.team}\u0000${scope.id}`
      this.leases(key, a.now).set(a.requestId, { expires: a.now + LEASE_MS, tokens: a.tokens })
      const { requests_per_minute: rpm, tokens_per_minute: tpm } = scope.limits
      if (rpm !== undefined) {
        const log = this.window(key, a.now)
        log.push({ t: a.now, id: a.requestId })
        const state = { limit: rpm, remaining: rpm - log.length, resetMs: log[0]!.t + MINUTE_MS - a.now }
        if (!rate.requests || state.remaining < rate.requests.remaining) rate.requests = state
      }
      if (tpm !== undefined) {
        const b = this.bucket(key, tpm, a.now)
        b.level -= a.tokens
        this.tpm.set(key, b)
        const state = { limit: tpm, remaining: Math.max(0, Math.floor(b.level)), resetMs: Math.ceil(((tpm - b.level) * MINUTE_MS) / tpm) }
        if (!rate.tokens || state.remaining < rate.tokens.remaining) rate.tokens = state
      }
    }
    return { ok: true, rate, ticket: { team: a.team, requestId: a.requestId, scopes: a.scopes, tokens: a.tokens, day: utcDay(a.now), month: utcMonth(a.now) } }
  }

  async settle(s: Settlement): Promise<void> {
    const { ticket, usage } = s
    for (const scope of ticket.scopes) {
      const key = `${ticket.team}\u0000${scope.id}`
      this.inflight.get(key)?.delete(ticket.requestId)
      for (const period of [`d:${ticket.day}`, `m:${ticket.month}`]) {
        const k = `${key}\u0000${period}`
        this.used.set(k, (this.used.get(k) ?? 0) + usage.total_tokens)
      }
      const tpm = scope.limits.tokens_per_minute
      if (tpm !== undefined) {
        const b = this.bucket(key, tpm, s.now)
        b.level = Math.min(tpm, b.level + ticket.tokens - usage.total_tokens)
        this.tpm.set(key, b)
      }
    }
    let days = this.usageByDay.get(ticket.team)
    if (!days) this.usageByDay.set(ticket.team, (days = new Map()))
    let fields = days.get(ticket.day)
    if (!fields) days.set(ticket.day, (fields = new Map()))
    // One row of counters per key and model (in USAGE_METRICS order), named as fields only when read.
    const base = usageField(s.keyId, s.model)
    let row = fields.get(base)
    if (!row) fields.set(base, (row = [0, 0, 0, 0, 0]))
    row[0]! += 1
    row[1]! += usage.prompt_tokens
    row[2]! += usage.completion_tokens
    row[3]! += usage.total_tokens
    row[4]! += s.estimated ? 1 : 0
  }

  async renew(tickets: Ticket[], now: number): Promise<void> {
    for (const t of tickets) {
      for (const scope of t.scopes) {
        const lease = this.inflight.get(`${t.team}\u0000${scope.id}`)?.get(t.requestId)
        if (lease) lease.expires = now + LEASE_MS
      }
    }
  }

  async status(team: string, scopes: Scope[], now: number): Promise<Record<string, ScopeStatus>> {
    const out: Record<string, ScopeStatus> = {}
    for (const scope of scopes) {
      const key = `${team}\u0000${scope.id}`
      const leases = this.leases(key, now)
      const reserved = [...leases.values()].reduce((sum, l) => sum + l.tokens, 0)
      const tokenBucket = (limit: number) => Math.ceil(limit - this.bucket(key, limit, now).level)
      out[scope.id] = describeStatus(scope.limits, {
        requests: this.window(key, now).length,
        tokensMinute: tokenBucket,
        day: this.used.get(`${key}\u0000d:${utcDay(now)}`) ?? 0,
        month: this.used.get(`${key}\u0000m:${utcMonth(now)}`) ?? 0,
        inflight: leases.size,
        reserved,
      })
    }
    return out
  }

  async usage(q: UsageQuery): Promise<UsageRow[]> {
    const sources: { team: string; day: string; fields: Iterable<[string, number]> }[] = []
    for (const team of q.teams) {
      for (const day of daysBetween(q.from, q.to)) {
        const rows = this.usageByDay.get(team)?.get(day)
        if (rows) sources.push({ team, day, fields: asFields(rows) })
      }
    }
    return aggregateUsage(sources, q)
  }

  /**
   * The audit trail is Redis's (the `tg:audit` stream); the embedded store keeps none. It used to
   * keep the last 10,000 entries in memory, which nothing ever read, so every request's entry
   * outlived the young generation (docs/benchmarks.md).
   */
  async audit(_entry: AuditEntry): Promise<void> {}
}

function* asFields(rows: Map<string, number[]>): Iterable<[string, number]> {
  for (const [base, row] of rows) for (let i = 0; i < USAGE_METRICS.length; i++) yield [base + USAGE_METRICS[i], row[i]!]
}
