import { z } from 'zod'

/**
 * Quota limits of a team (and, later, of a key within it). Absent means unlimited; in a PATCH,
 * null removes a limit. Enforcement lives in the quotas code; this is the contract and its checks.
 */
export const LIMIT_NAMES = [
  'requests_per_minute',
  'tokens_per_minute',
  'tokens_per_day',
  'tokens_per_month',
  'concurrent_requests',
] as const

export type LimitName = (typeof LIMIT_NAMES)[number]
export type Limits = Partial<Record<LimitName, number>>
export type LimitsPatch = Partial<Record<LimitName, number | null>>

const limitValue = z
  .number({ error: 'must be a number' })
  .int({ error: 'must be a whole number' })
  .min(0, { error: 'must not be negative' })
  .max(Number.MAX_SAFE_INTEGER, { error: 'is too large' })

export const limitsSchema = z.strictObject(
  Object.fromEntries(LIMIT_NAMES.map((name) => [name, limitValue.optional()])) as Record<LimitName, z.ZodOptional<typeof limitValue>>,
)

export const limitsPatchSchema = z.strictObject(
  Object.fromEntries(LIMIT_NAMES.map((name) => [name, limitValue.nullable().optional()])) as Record<
    LimitName,
    z.ZodOptional<z.ZodNullable<typeof limitValue>>
  >,
)

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
