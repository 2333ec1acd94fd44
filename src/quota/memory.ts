import { checkScope, ScopeState, type Lease } from './memory-scope.js'
import { daysBetween, dayEnd, monthEnd, utcDay, utcHour, utcMonth } from './periods.js'
import { aggregateUsage, USAGE_METRICS, usageField } from './report.js'
import { describeStatus } from './status.js'
import {
  LEASE_MS,
  MINUTE_MS,
  type Admission,
  type AdmitResult,
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
 * Quotas for the embedded store, in this process's memory. The same rules as the Lua scripts of
 * RedisQuotas (one contract suite checks both): a sliding one-minute log for requests, a token
 * bucket refilling continuously for tokens per minute, UTC day and month counters with the
 * reservations of requests in flight, and leases for concurrency.
 *
 * Every step of an admission costs the same however many requests a scope has in its minute or in
 * flight: the minute's log is kept in order and trimmed from its start, the leases are a list in
 * order of expiry (a renewal moves a lease to its end) that lapses from its start, and each scope
 * keeps the count and the reserved tokens of its leases as they change. A ticket holds its own
 * leases, so settling and renewing find them without a lookup. Nothing here is a Map that gains
 * and loses an entry per request: such a Map keeps the requests in flight alive through
 * young-generation collections (bench/gc.ts).
 */

/** The leases an admitted request holds, one per scope, in the order of its ticket's scopes. */
const LEASES = Symbol('leases')
type HeldTicket = Ticket & { [LEASES]?: Lease[] }

export class MemoryQuotas implements QuotaEngine {
  /** team → scope id → its state: two lookups, no key string made per request. */
  private readonly teams = new Map<string, Map<string, ScopeState>>()
  /** team → day → key and model → [requests, prompt, completion, total, estimated, cost] */
  private readonly usageByDay = new Map<string, Map<string, Map<string, number[]>>>()
  /** The same per hour: team → day → hour, key and model → counters. */
  private readonly usageByHour = new Map<string, Map<string, Map<string, number[]>>>()

  private state(team: string, scopeId: string): ScopeState {
    let scopes = this.teams.get(team)
    if (scopes === undefined) this.teams.set(team, (scopes = new Map()))
    let state = scopes.get(scopeId)
    if (state === undefined) scopes.set(scopeId, (state = new ScopeState()))
    return state
  }

  async admit(a: Admission): Promise<AdmitResult> {
    const states: ScopeState[] = []
    for (const scope of a.scopes) {
      const state = this.state(a.team, scope.id)
      const refusal = checkScope(state, scope, a.tokens, a.cost ?? 0, a.now)
      if (refusal) return { ok: false, refusal }
      states.push(state)
    }
    const rate: RateState = {}
    const leases: Lease[] = []
    for (let i = 0; i < states.length; i++) {
      const state = states[i]!
      const lease: Lease = {
        requestId: a.requestId,
        tokens: a.tokens,
        cost: a.cost ?? 0,
        expires: a.now + LEASE_MS,
        scope: null,
        prev: null,
        next: null,
      }
      state.link(lease)
      leases.push(lease)
      const { requests_per_minute: rpm, tokens_per_minute: tpm } = a.scopes[i]!.limits
      if (rpm !== undefined) {
        state.record(a.now)
        const count = state.window(a.now)
        const window = { limit: rpm, remaining: rpm - count, resetMs: state.oldest()! + MINUTE_MS - a.now }
        if (!rate.requests || window.remaining < rate.requests.remaining) rate.requests = window
      }
      if (tpm !== undefined) {
        const level = (state.level = state.bucket(tpm, a.now) - a.tokens)
        const bucket = { limit: tpm, remaining: Math.max(0, Math.floor(level)), resetMs: Math.ceil(((tpm - level) * MINUTE_MS) / tpm) }
        if (!rate.tokens || bucket.remaining < rate.tokens.remaining) rate.tokens = bucket
      }
      for (const [cap, spent, end] of [
        [a.scopes[i]!.limits.usd_per_day, state.spentDays.get(utcDay(a.now)) ?? 0, dayEnd(a.now)],
        [a.scopes[i]!.limits.usd_per_month, state.spentMonths.get(utcMonth(a.now)) ?? 0, monthEnd(a.now)],
      ] as const) {
        if (cap === undefined) continue
        // (state.reservedCost holds this request's cost now.)
        const budget = { limit: cap, remaining: cap - spent - state.reservedCost, resetMs: end - a.now }
        if (!rate.budget || budget.remaining < rate.budget.remaining) rate.budget = budget
      }
      // The token headers describe the tightest token window: the minute's bucket, or a day or month.
      const { tokens_per_day: tpd, tokens_per_month: tpmo } = a.scopes[i]!.limits
      for (const [cap, used, end] of [
        [tpd, state.days.get(utcDay(a.now)) ?? 0, dayEnd(a.now)],
        [tpmo, state.months.get(utcMonth(a.now)) ?? 0, monthEnd(a.now)],
      ] as const) {
        if (cap === undefined) continue
        // (state.reserved holds this request's tokens now.)
        const period = { limit: cap, remaining: cap - used - state.reserved, resetMs: end - a.now }
        if (!rate.tokens || period.remaining < rate.tokens.remaining) rate.tokens = period
      }
    }
    const ticket: HeldTicket = {
      team: a.team,
      requestId: a.requestId,
      scopes: a.scopes,
      tokens: a.tokens,
      cost: a.cost ?? 0,
      day: utcDay(a.now),
      month: utcMonth(a.now),
      hour: utcHour(a.now),
      [LEASES]: leases,
    }
    return { ok: true, rate, ticket }
  }

  /** The request's lease in the i-th scope of its ticket, while it is held. */
  private lease(ticket: HeldTicket, i: number): Lease | null {
    const held = ticket[LEASES]
    if (held !== undefined) return held[i]!.scope !== null ? held[i]! : null
    return this.teams.get(ticket.team)?.get(ticket.scopes[i]!.id)?.find(ticket.requestId) ?? null
  }

  async settle(s: Settlement): Promise<void> {
    const { ticket, usage } = s
    for (let i = 0; i < ticket.scopes.length; i++) {
      const scope = ticket.scopes[i]!
      const state = this.state(ticket.team, scope.id)
      const lease = this.lease(ticket, i)
      if (lease !== null) state.unlink(lease)
      state.days.set(ticket.day, (state.days.get(ticket.day) ?? 0) + usage.total_tokens)
      state.months.set(ticket.month, (state.months.get(ticket.month) ?? 0) + usage.total_tokens)
      const cost = s.costMicros ?? 0
      if (cost > 0) {
        state.spentDays.set(ticket.day, (state.spentDays.get(ticket.day) ?? 0) + cost)
        state.spentMonths.set(ticket.month, (state.spentMonths.get(ticket.month) ?? 0) + cost)
      }
      const tpm = scope.limits.tokens_per_minute
      if (tpm !== undefined) state.level = Math.min(tpm, state.bucket(tpm, s.now) + ticket.tokens - usage.total_tokens)
    }
    // One row of counters per key and model (in USAGE_METRICS order), named as fields only when
    // read; per day, and per hour of the day (its fields led by the hour).
    const base = usageField(s.keyId, s.model, s.endUser)
    const hour = ticket.hour ?? utcHour(s.now)
    for (const [byDay, field] of [
      [this.usageByDay, base],
      [this.usageByHour, `${hour}\t${base}`],
    ] as const) {
      let days = byDay.get(ticket.team)
      if (!days) byDay.set(ticket.team, (days = new Map()))
      let fields = days.get(ticket.day)
      if (!fields) days.set(ticket.day, (fields = new Map()))
      let row = fields.get(field)
      if (!row) fields.set(field, (row = [0, 0, 0, 0, 0, 0]))
      row[0]! += 1
      row[1]! += usage.prompt_tokens
      row[2]! += usage.completion_tokens
      row[3]! += usage.total_tokens
      row[4]! += s.estimated ? 1 : 0
      row[5]! += s.costMicros ?? 0
    }
  }

  async renew(tickets: Ticket[], now: number): Promise<void> {
    for (const t of tickets) {
      for (let i = 0; i < t.scopes.length; i++) {
        const lease = this.lease(t, i)
        if (lease === null) continue
        const state = lease.scope!
        state.unlink(lease)
        lease.expires = now + LEASE_MS
        state.link(lease)
      }
    }
  }

  async status(team: string, scopes: Scope[], now: number): Promise<Record<string, ScopeStatus>> {
    const out: Record<string, ScopeStatus> = {}
    for (const scope of scopes) {
      const state = this.state(team, scope.id)
      state.lapse(now)
      out[scope.id] = describeStatus(scope.limits, {
        requests: state.window(now),
        tokensMinute: (limit) => Math.ceil(limit - state.bucket(limit, now)),
        day: state.days.get(utcDay(now)) ?? 0,
        month: state.months.get(utcMonth(now)) ?? 0,
        inflight: state.inflight,
        reserved: state.reserved,
        spentDay: state.spentDays.get(utcDay(now)) ?? 0,
        spentMonth: state.spentMonths.get(utcMonth(now)) ?? 0,
        reservedCost: state.reservedCost,
      })
    }
    return out
  }

  async usage(q: UsageQuery): Promise<UsageRow[]> {
    const sources: { team: string; day: string; fields: Iterable<[string, number]> }[] = []
    const byDay = q.groupBy.includes('hour') ? this.usageByHour : this.usageByDay
    for (const team of q.teams) {
      for (const day of daysBetween(q.from, q.to)) {
        const rows = byDay.get(team)?.get(day)
        if (rows) sources.push({ team, day, fields: asFields(rows) })
      }
    }
    return aggregateUsage(sources, q)
  }
}

function* asFields(rows: Map<string, number[]>): Iterable<[string, number]> {
  for (const [base, row] of rows) for (let i = 0; i < USAGE_METRICS.length; i++) yield [base + USAGE_METRICS[i], row[i]!]
}
