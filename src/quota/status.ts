import type { Limits } from '../limits.js'
import { toUsd } from '../spend.js'
import { MINUTE_MS, type ScopeStatus } from './types.js'

/** What both quota engines share outside their storage: the token bucket's refill and the status view. */

/** A tokens-per-minute bucket's level now: it refills continuously at `limit` per minute, up to `limit`. */
export function refill(level: number, ts: number, limit: number, now: number): number {
  return Math.min(limit, level + ((now - ts) * limit) / MINUTE_MS)
}

export interface CurrentUse {
  requests: number
  /** Tokens used of a per-minute bucket of the given size. */
  tokensMinute: (limit: number) => number
  day: number
  month: number
  inflight: number
  reserved: number
  /** Micro-dollars spent today and this month, and reserved by requests in flight. */
  spentDay: number
  spentMonth: number
  reservedCost: number
}

/** Each limit of a scope with its use and what remains (shared by both engines). */
export function describeStatus(limits: Limits, use: CurrentUse): ScopeStatus {
  const status: ScopeStatus = {}
  const entry = (limit: number, used: number, inFlight?: number) => ({
    limit,
    used,
    remaining: Math.max(0, limit - used - (inFlight ?? 0)),
    ...(inFlight !== undefined ? { in_flight: inFlight } : {}),
  })
  if (limits.requests_per_minute !== undefined) status.requests_per_minute = entry(limits.requests_per_minute, use.requests)
  if (limits.tokens_per_minute !== undefined)
    status.tokens_per_minute = entry(limits.tokens_per_minute, Math.max(0, use.tokensMinute(limits.tokens_per_minute)))
  if (limits.tokens_per_day !== undefined) status.tokens_per_day = entry(limits.tokens_per_day, use.day, use.reserved)
  if (limits.tokens_per_month !== undefined) status.tokens_per_month = entry(limits.tokens_per_month, use.month, use.reserved)
  if (limits.concurrent_requests !== undefined) status.concurrent_requests = entry(limits.concurrent_requests, use.inflight)
  // Budgets: counted in micro-dollars, shown in USD.
  const budget = (limit: number, spent: number) => {
    const e = entry(limit, spent, use.reservedCost)
    return { limit: toUsd(e.limit), used: toUsd(e.used), remaining: toUsd(e.remaining), in_flight: toUsd(use.reservedCost) }
  }
  if (limits.usd_per_day !== undefined) status.usd_per_day = budget(limits.usd_per_day, use.spentDay)
  if (limits.usd_per_month !== undefined) status.usd_per_month = budget(limits.usd_per_month, use.spentMonth)
  return status
}
