import { dayEnd, monthEnd, utcDay, utcMonth } from './periods.js'
import { refill } from './status.js'
import { MINUTE_MS, type Refusal, type Scope } from './types.js'

/**
 * What the memory engine (memory.ts) counts for one scope of a team: its minute's request log, its
 * token bucket, its day and month counters, and its leases, each step of constant cost.
 */

/** One request in flight in one scope: a link in the scope's list of leases. */
export interface Lease {
  requestId: string
  tokens: number
  /** Micro-dollars reserved against budgets. */
  cost: number
  expires: number
  /** The scope whose list holds it; null once it has left (settled or lapsed). */
  scope: ScopeState | null
  prev: Lease | null
  next: Lease | null
}

/** All a scope of a team counts. */
export class ScopeState {
  /** Admission times of the last minute, oldest first, from `start` on (what is before it has left the window). */
  times: number[] = []
  start = 0
  /** The token bucket: its level at `bucketTs`; NaN before the first use (a full bucket). */
  level = Number.NaN
  bucketTs = 0
  /** Leases in order of expiry. */
  first: Lease | null = null
  last: Lease | null = null
  inflight = 0
  reserved = 0
  /** Micro-dollars reserved by requests in flight. */
  reservedCost = 0
  /** Tokens used per UTC day and month (YYYY-MM-DD, YYYY-MM). */
  readonly days = new Map<string, number>()
  readonly months = new Map<string, number>()
  /** Micro-dollars spent per UTC day and month (only in scopes with a budget). */
  readonly spentDays = new Map<string, number>()
  readonly spentMonths = new Map<string, number>()

  /** The minute up to `now`: drops what has left it and answers how many remain. */
  window(now: number): number {
    const times = this.times
    let start = this.start
    while (start < times.length && times[start]! <= now - MINUTE_MS) start++
    if (start > 64 && start * 2 > times.length) {
      times.copyWithin(0, start)
      times.length -= start
      start = 0
    }
    this.start = start
    return times.length - start
  }

  oldest(): number | undefined {
    return this.times[this.start]
  }

  record(now: number): void {
    const times = this.times
    let i = times.length
    times.push(now)
    // Kept in order even if a clock steps back: slide the new time into place from the end.
    while (i > this.start && times[i - 1]! > now) {
      times[i] = times[i - 1]!
      times[--i] = now
    }
  }

  /** The bucket's level at `now`, refilled (and kept as of now: refilling is linear up to the cap). */
  bucket(limit: number, now: number): number {
    this.level = Number.isNaN(this.level) ? limit : refill(this.level, this.bucketTs, limit, now)
    this.bucketTs = now
    return this.level
  }

  /** Lets the leases lapse that expire by `now`. */
  lapse(now: number): void {
    while (this.first !== null && this.first.expires <= now) this.unlink(this.first)
  }

  /** Puts a lease in its place by expiry: at the end, unless a clock stepped back. */
  link(lease: Lease): void {
    let after = this.last
    while (after !== null && after.expires > lease.expires) after = after.prev
    lease.scope = this
    lease.prev = after
    lease.next = after === null ? this.first : after.next
    if (lease.next !== null) lease.next.prev = lease
    else this.last = lease
    if (after !== null) after.next = lease
    else this.first = lease
    this.inflight++
    this.reserved += lease.tokens
    this.reservedCost += lease.cost
  }

  /** Takes a lease out; it drops its pointers, so a lease kept by a ticket holds no others alive. */
  unlink(lease: Lease): void {
    if (lease.prev !== null) lease.prev.next = lease.next
    else this.first = lease.next
    if (lease.next !== null) lease.next.prev = lease.prev
    else this.last = lease.prev
    lease.scope = lease.prev = lease.next = null
    this.inflight--
    this.reserved -= lease.tokens
    this.reservedCost -= lease.cost
  }

  /** A lease of an admitted request, found by its id (for a ticket that does not hold its leases). */
  find(requestId: string): Lease | null {
    for (let l = this.first; l !== null; l = l.next) if (l.requestId === requestId) return l
    return null
  }
}

/** Whether a request fits a scope's every limit now, or the refusal of the first it does not. */
export function checkScope(state: ScopeState, scope: Scope, tokens: number, cost: number, now: number): Refusal | null {
  const { limits } = scope
  const refuse = (r: Omit<Refusal, 'scope'>): Refusal => ({ ...r, scope: scope.label })
  state.lapse(now)

  if (limits.concurrent_requests !== undefined && state.inflight + 1 > limits.concurrent_requests) {
    return refuse({
      kind: 'concurrency',
      limit: limits.concurrent_requests,
      used: state.inflight,
      requested: 1,
      retryAfterMs: 1000,
      final: false,
    })
  }
  if (limits.requests_per_minute !== undefined) {
    const count = state.window(now)
    if (count + 1 > limits.requests_per_minute) {
      const oldest = state.oldest() ?? now
      return refuse({
        kind: 'requests',
        limit: limits.requests_per_minute,
        used: count,
        requested: 1,
        retryAfterMs: Math.max(1, oldest + MINUTE_MS - now),
        final: limits.requests_per_minute === 0,
      })
    }
  }
  if (limits.tokens_per_minute !== undefined) {
    const limit = limits.tokens_per_minute
    const level = state.bucket(limit, now)
    if (tokens > limit)
      return refuse({
        kind: 'tokens',
        limit,
        used: Math.max(0, Math.ceil(limit - level)),
        requested: tokens,
        retryAfterMs: 0,
        final: true,
      })
    if (tokens > level) {
      return refuse({
        kind: 'tokens',
        limit,
        used: Math.ceil(limit - level),
        requested: tokens,
        retryAfterMs: Math.ceil(((tokens - level) * MINUTE_MS) / limit),
        final: false,
      })
    }
  }
  // Day and month quotas of tokens, then budgets of micro-dollars: each against what is spent
  // and what requests in flight reserved. (Most scopes have none: no tuples made for them.)
  const { tokens_per_day: tpd, tokens_per_month: tpmo, usd_per_day: upd, usd_per_month: upmo } = limits
  if (tpd === undefined && tpmo === undefined && upd === undefined && upmo === undefined) return null
  const day = utcDay(now)
  const month = utcMonth(now)
  for (const [kind, used, reserved, amount, end] of [
    ['tokens_per_day', state.days.get(day) ?? 0, state.reserved, tokens, dayEnd(now)],
    ['tokens_per_month', state.months.get(month) ?? 0, state.reserved, tokens, monthEnd(now)],
    ['usd_per_day', state.spentDays.get(day) ?? 0, state.reservedCost, cost, dayEnd(now)],
    ['usd_per_month', state.spentMonths.get(month) ?? 0, state.reservedCost, cost, monthEnd(now)],
  ] as const) {
    const limit = limits[kind]
    if (limit === undefined) continue
    const refusal = checkPeriod(kind, limit, used, reserved, amount, now, end)
    if (refusal) return refuse(refusal)
  }
  return null
}

/** A day or month quota: spent (final until the period ends), or full with what is reserved (wait). */
function checkPeriod(
  kind: 'tokens_per_day' | 'tokens_per_month' | 'usd_per_day' | 'usd_per_month',
  limit: number,
  used: number,
  reserved: number,
  tokens: number,
  now: number,
  end: number,
): Omit<Refusal, 'scope'> | null {
  if (used + tokens > limit) return { kind, limit, used, requested: tokens, retryAfterMs: end - now, final: true, resetsAt: end }
  if (used + reserved + tokens > limit) return { kind, limit, used: used + reserved, requested: tokens, retryAfterMs: 1000, final: false }
  return null
}
