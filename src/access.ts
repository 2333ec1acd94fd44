import picomatch from 'picomatch'
import { z } from 'zod'
import type { ResolvedModel } from './upstream/router.js'

/**
 * Which models a team, and a key within it, may use: `allowed_models`, a list of model names and
 * glob patterns (`minimaxai/*`, `meta/llama-3.1-*`, `**`), matched without regard to case like model names
 * are. `*` stands for any run of characters within one path segment, `**` for any run across
 * segments, `?` for one character. Absent or null: every model. A key's list narrows its team's:
 * a model must pass both. A request passes a list when the name the client sent or the model it
 * resolves to matches (an alias the operator defined, or its target).
 */

export type AllowedModels = string[] | null

const PATTERN = /^[A-Za-z0-9._:@+*?/-]+$/

const pattern = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty', abort: true })
  .max(256, { error: 'must be at most 256 characters', abort: true })
  .regex(PATTERN, { error: 'may hold only letters, digits, ". _ - : @ + /" and the wildcards * and ?', abort: true })
  .refine((p) => !p.split('/').includes(''), { error: 'must not have an empty path segment ("a//b", a leading or trailing "/")' })

export const allowedModelsSchema = z
  .array(pattern, { error: 'must be a list of model names or patterns, or null for every model' })
  .max(1000, { error: 'must hold at most 1000 patterns' })
  .nullable()

/** Each list's matcher, made once per list (a team's list is the same array while it is cached). */
const matchers = new WeakMap<string[], (name: string) => boolean>()

function matcher(list: string[]): (name: string) => boolean {
  let match = matchers.get(list)
  if (match === undefined) {
    match = list.length === 0 ? () => false : picomatch(list, { nocase: true, dot: true })
    matchers.set(list, match)
  }
  return match
}

/** Whether one list lets any of these names through (null lets every name through). */
export function listAllows(list: AllowedModels | undefined, names: readonly string[]): boolean {
  if (list === null || list === undefined) return true
  const match = matcher(list)
  return names.some((name) => match(name))
}

/** Whether the team's and the key's lists both let one of these names through. */
export function allows(lists: { team: AllowedModels | undefined; key: AllowedModels | undefined }, names: readonly string[]): boolean {
  return listAllows(lists.team, names) && listAllows(lists.key, names)
}

/** Whether a principal may use a resolved model: by the name its client sent, or the model's own. */
export function mayUse(
  principal: { team: { allowed_models?: AllowedModels }; key: { allowed_models?: AllowedModels } },
  r: ResolvedModel,
): boolean {
  return allows({ team: principal.team.allowed_models, key: principal.key.allowed_models }, [r.requested, r.model.name])
}
