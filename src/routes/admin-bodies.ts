import { z } from 'zod'
import { allowedModelsSchema } from '../access.js'
import { invalidRequest } from '../errors.js'
import { limitsPatchSchema, limitsSchema, mergeLimits, type Limits, type LimitsPatch } from '../limits.js'
import { describeIssues, firstIssuePath } from '../validation.js'

/** What the admin API accepts: each body's schema, and how a refused one is answered (a 400 naming the field). */

const TEAM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
export const KEY_ID = /^key_[A-Za-z0-9]{16}$/

const teamId = z.string({ error: 'must be a string' }).regex(TEAM_ID, {
  error: 'must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit',
})
const displayName = z
  .string({ error: 'must be a string' })
  .trim()
  .min(1, { error: 'must not be empty' })
  .max(200, { error: 'must be at most 200 characters' })

const modelName = z.string().min(1).max(256)
/** Per-model limits; in a PATCH a model set to null loses its limits. */
const modelLimits = z.record(modelName, limitsSchema)
const modelLimitsPatch = z.record(modelName, limitsPatchSchema.nullable())

export const createTeamBody = z.strictObject({
  id: teamId,
  name: displayName.optional(),
  limits: limitsSchema.optional(),
  model_limits: modelLimits.optional(),
  allowed_models: allowedModelsSchema.optional(),
  end_user_limits: limitsSchema.optional(),
})
export const patchTeamBody = z
  .strictObject({
    name: displayName.optional(),
    limits: limitsPatchSchema.optional(),
    model_limits: modelLimitsPatch.optional(),
    allowed_models: allowedModelsSchema.optional(),
    end_user_limits: limitsPatchSchema.optional(),
  })
  .refine((b) => Object.values(b).some((v) => v !== undefined), {
    error: 'give at least one of name, limits, model_limits, allowed_models, end_user_limits',
  })
export const createKeyBody = z.strictObject({
  name: displayName.nullable().optional(),
  expires_at: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time, e.g. 2027-01-31T00:00:00Z' }).nullable().optional(),
  limits: limitsSchema.optional(),
  allowed_models: allowedModelsSchema.optional(),
})
export const rotateKeyBody = z.strictObject({
  grace_seconds: z
    .int({ error: 'must be a whole number of seconds' })
    .min(0, { error: 'must not be negative' })
    .max(30 * 86_400, { error: 'must be at most 30 days' })
    .optional(),
})
export const patchKeyBody = z
  .strictObject({
    name: displayName.nullable().optional(),
    limits: limitsPatchSchema.optional(),
    allowed_models: allowedModelsSchema.optional(),
  })
  .refine((b) => Object.values(b).some((v) => v !== undefined), { error: 'give at least one of name, limits, allowed_models' })

export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const result = schema.safeParse(body ?? {})
  if (!result.success) {
    const problems = describeIssues(result.error.issues)
    throw invalidRequest(`Invalid request body: ${problems.join('; ')}`, firstIssuePath(result.error.issues), 'invalid_value')
  }
  return result.data
}

export function mergeModelLimits(current: Record<string, Limits>, patch: Record<string, LimitsPatch | null>): Record<string, Limits> {
  const next = { ...current }
  for (const [model, limits] of Object.entries(patch)) {
    if (limits === null) delete next[model]
    else {
      const merged = mergeLimits(next[model] ?? {}, limits)
      if (Object.keys(merged).length === 0) delete next[model]
      else next[model] = merged
    }
  }
  return next
}
