import { z } from 'zod'
import { toMicros, usd } from './spend.js'

/**
 * Quota limits of a team (and, later, of a key within it). Absent means unlimited; in a PATCH,
 * null removes a limit. Enforcement lives in the quotas code; this is the contract and its checks.
 */
/** Every limit; admit.lua reads a scope's limits in this order (quota/redis-calls.ts). */
export const LIMIT_NAMES = [
  'requests_per_minute',
  'tokens_per_minute',
  'tokens_per_day',
  'tokens_per_month',
  'concurrent_requests',
  'usd_per_day',
  'usd_per_month',
] as const

/** The budgets: in USD (up to six decimals) as written; the quota engines count them in micro-dollars. */
export const BUDGET_NAMES = ['usd_per_day', 'usd_per_month'] as const

export type LimitName = (typeof LIMIT_NAMES)[number]
export type Limits = Partial<Record<LimitName, number>>
export type LimitsPatch = Partial<Record<LimitName, number | null>>

const limitValue = z
  .number({ error: 'must be a number' })
  .int({ error: 'must be a whole number' })
  .min(0, { error: 'must not be negative' })
  .max(Number.MAX_SAFE_INTEGER, { error: 'is too large' })

const valueOf = (name: LimitName) => ((BUDGET_NAMES as readonly string[]).includes(name) ? usd : limitValue)

export const limitsSchema = z.strictObject(
  Object.fromEntries(LIMIT_NAMES.map((name) => [name, valueOf(name).optional()])) as Record<LimitName, z.ZodOptional<z.ZodNumber>>,
)

export const limitsPatchSchema = z.strictObject(
  Object.fromEntries(LIMIT_NAMES.map((name) => [name, valueOf(name).nullable().optional()])) as Record<
    LimitName,
    z.ZodOptional<z.ZodNullable<z.ZodNumber>>
  >,
)

/** Limits as the quota engines count them: budgets in whole micro-dollars, the rest as they are. */
export function engineLimits(limits: Limits): Limits {
  if (limits.usd_per_day === undefined && limits.usd_per_month === undefined) return limits
  const out = { ...limits }
  for (const name of BUDGET_NAMES) if (out[name] !== undefined) out[name] = toMicros(out[name])
  return out
}

/** Applies a patch: given values replace, null removes, absent keeps. */
export function mergeLimits(current: Limits, patch: LimitsPatch): Limits {
  const next: Limits = { ...current }
  for (const name of LIMIT_NAMES) {
    const value = patch[name]
    if (value === null) delete next[name]
    else if (value !== undefined) next[name] = value
  }
  return next
}
