import { GatewayError } from '../errors.js'
import type { LimitKind, Refusal, Scope } from './types.js'

/**
 * A request that a token quota could never hold as asked. Where max_tokens came from the gateway's
 * own default, the gateway lowers it to what the quota can still admit, and says so; where the
 * client asked for more than the whole quota, it answers a 400 that names the quota and the
 * largest max_tokens that could fit, rather than a 429 to retry at midnight that would never fit.
 */

const TOKEN_KINDS: ReadonlySet<LimitKind> = new Set(['tokens', 'tokens_per_day', 'tokens_per_month'])

const NAMES: Record<string, string> = {
  tokens_per_minute: 'tokens per minute (TPM)',
  tokens_per_day: 'tokens per day (TPD)',
  tokens_per_month: 'tokens per month',
}

/** The smallest token limit of the scopes: more than it, no one request can ever reserve. */
export function wholeTokenLimit(scopes: readonly Scope[]): { limit: number; name: string; scope: string } | null {
  let whole: { limit: number; name: string; scope: string } | null = null
  for (const s of scopes) {
    for (const field of ['tokens_per_minute', 'tokens_per_day', 'tokens_per_month'] as const) {
      const limit = s.limits[field]
      if (limit !== undefined && (whole === null || limit < whole.limit)) whole = { limit, name: NAMES[field]!, scope: s.label }
    }
  }
  return whole
}

/**
 * For a request whose max_tokens is the gateway's default: the largest max_tokens (per choice)
 * that the refused quota can still admit, or null if waiting is what it needs (or nothing fits).
 */
export function fittingCompletion(refusal: Refusal, prompt: number, choices: number): number | null {
  if (!refusal.final || !TOKEN_KINDS.has(refusal.kind)) return null
  const room = refusal.kind === 'tokens' ? refusal.limit : refusal.limit - refusal.used
  const fit = Math.floor((room - prompt) / choices)
  return fit >= 1 ? fit : null
}

/** The 400 for a request whose own max_tokens not even the whole quota could hold. */
export function tooLargeForQuota(
  whole: { limit: number; name: string; scope: string },
  prompt: number,
  asked: number,
  choices: number,
): GatewayError {
  const fit = Math.floor((whole.limit - prompt) / choices)
  const needs = prompt + asked * choices
  const advice = fit >= 1 ? `The largest max_tokens that could fit is ${fit}.` : 'The prompt alone is larger than it: shorten it.'
  return new GatewayError(
    'quota_too_small',
    `This request may use up to ${needs} tokens (a prompt of about ${prompt}, max_tokens ${asked}${choices > 1 ? ` for each of ${choices} choices` : ''}), more than the whole ${whole.name} quota of ${whole.scope} (Limit ${whole.limit}). ${advice}`,
    { param: 'max_tokens', headers: { 'x-should-retry': 'false' } },
  )
}
