import type { Limits } from '../limits.js'

/**
 * The quota contract. Two engines implement it and pass one contract suite: MemoryQuotas (the
 * embedded store, one process) and RedisQuotas (one Lua script per admission and one per
 * settlement, so any number of gateway instances share every limit exactly).
 *
 * A request is admitted against every scope that has limits (its team, the team's limits for its
 * model, its key): it passes only if it fits all of them, and then it is counted in all of them.
 */

export interface Scope {
  /** `team`, `model:<name>`, `key:<id>` or `user:<digest>`: unique within the team. */
  id: string
  /** For messages: `team 'ml'`, `model 'x' in team 'ml'`, `key key_… of team 'ml'`. */
  label: string
  /** As the engines count them: budgets in whole micro-dollars (engineLimits). */
  limits: Limits
}

export interface Admission {
  team: string
  requestId: string
  scopes: Scope[]
  /** Tokens reserved until the request settles: prompt estimate + max completion tokens. */
  tokens: number
  /** Micro-dollars reserved until it settles against budgets: the most those tokens may cost. */
  cost?: number
  now: number
}

/** What settlement and lease renewal need to know of an admitted request. */
export interface Ticket {
  team: string
  requestId: string
  scopes: Scope[]
  tokens: number
  /** Micro-dollars reserved (0 without a budget). */
  cost?: number
  /** UTC day and month of admission; usage and quota periods are counted in them. */
  day: string
  month: string
  /** UTC hour of admission (`HH`), for the hourly usage report; by default the settlement's. */
  hour?: string
}

export type LimitKind = 'requests' | 'tokens' | 'tokens_per_day' | 'tokens_per_month' | 'usd_per_day' | 'usd_per_month' | 'concurrency'

export interface Refusal {
  kind: LimitKind
  scope: string
  limit: number
  used: number
  requested: number
  retryAfterMs: number
  /**
   * True when waiting will not help before the period ends (a day or month quota spent), or ever
   * (a request larger than a per-minute token limit): clients must not retry.
   */
  final: boolean
  /** When a spent day or month quota comes back (ms since the epoch). */
  resetsAt?: number
}

export interface WindowState {
  limit: number
  remaining: number
  /** Until the window frees its next unit (requests) or is full again (tokens). */
  resetMs: number
}

/** The tightest per-minute windows after admission, for the x-ratelimit-* headers. */
export interface RateState {
  requests?: WindowState
  tokens?: WindowState
  /** The tightest budget, in micro-dollars, until its day or month ends. */
  budget?: WindowState
}

export type AdmitResult = { ok: true; ticket: Ticket; rate: RateState } | { ok: false; refusal: Refusal }

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface Settlement {
  ticket: Ticket
  keyId: string
  /** The end user the request named (`safety_identifier` or `user`), if any. */
  endUser?: string | null
  /** The model that answered (after aliases). */
  model: string
  usage: Usage
  /** Usage was estimated from the text because the upstream reported none. */
  estimated: boolean
  /** What it cost, in whole micro-dollars (spend.ts). */
  costMicros?: number
  now: number
}

/** One limit with its current use, for the admin view and /v1/usage. */
export interface LimitStatus {
  limit: number
  used: number
  remaining: number
  /** Tokens reserved by requests in flight (token limits) or requests in flight (concurrency). */
  in_flight?: number
}

export type ScopeStatus = Partial<Record<keyof Limits, LimitStatus>>

export interface UsageQuery {
  teams: string[]
  from: string
  to: string
  key?: string
  model?: string
  /** Only this end user's requests. */
  endUser?: string
  groupBy: UsageGroup[]
}

/** What usage rows can be grouped by, besides their team. */
export const USAGE_GROUPS = ['day', 'hour', 'model', 'key', 'end_user'] as const
export type UsageGroup = (typeof USAGE_GROUPS)[number]

export interface UsageRow {
  team: string
  day?: string
  /** The UTC hour, `YYYY-MM-DDTHH` (grouped by hour). */
  hour?: string
  model?: string
  key?: string
  /** The end user; '' for requests that named none. */
  end_user?: string
  requests: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  estimated_requests: number
  /** What the rows' requests cost, in USD (summed exactly, in micro-dollars). */
  cost_usd: number
}

export interface QuotaEngine {
  admit(admission: Admission): Promise<AdmitResult>
  /** Gives back the reservation, counts the real usage in every period and in the usage report. */
  settle(settlement: Settlement): Promise<void>
  /** Extends the leases of requests still in flight, so a dead instance leaks them only briefly. */
  renew(tickets: Ticket[], now: number): Promise<void>
  status(team: string, scopes: Scope[], now: number): Promise<Record<string, ScopeStatus>>
  usage(query: UsageQuery): Promise<UsageRow[]>
  /** At shutdown, after the last settlement: hands Redis what the engine kept for its next calls. */
  shutdown?(): Promise<void>
}

/** How long a concurrency slot or reservation lives without renewal. */
export const LEASE_MS = 60_000
export const MINUTE_MS = 60_000
