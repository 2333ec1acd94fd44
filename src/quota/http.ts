import { createHash } from 'node:crypto'
import { GatewayError } from '../errors.js'
import { engineLimits, type Limits } from '../limits.js'
import { toUsd } from '../spend.js'
import type { ApiKeyRecord, Principal, Team } from '../store/types.js'
import type { RateState, Refusal, Scope } from './types.js'

/** Quotas at the HTTP edge: which scopes a request answers to, OpenAI's headers and 429s. */

const hasLimits = (limits: Limits | undefined): limits is Limits => limits !== undefined && Object.keys(limits).length > 0

export const teamScope = (team: Team): Scope | null =>
  hasLimits(team.limits) ? { id: 'team', label: `team '${team.id}'`, limits: engineLimits(team.limits) } : null

/**
 * A team's limits for a model, under the model's canonical name (ModelRouter): a limit written
 * `MiniMaxAI/MiniMax-M2.1` holds for `minimaxai/minimax-m2.1` too, whichever spelling a client sends.
 */
export function modelScope(team: Team, model: string): Scope | null {
  let limits = team.model_limits[model]
  if (limits === undefined) {
    const lower = model.toLowerCase()
    for (const [name, l] of Object.entries(team.model_limits)) if (name.toLowerCase() === lower) limits = l
  }
  return hasLimits(limits) ? { id: `model:${model}`, label: `model '${model}' in team '${team.id}'`, limits: engineLimits(limits) } : null
}

export const keyScope = (team: Team, key: ApiKeyRecord): Scope | null =>
  hasLimits(key.limits) ? { id: `key:${key.id}`, label: `key ${key.id} of team '${team.id}'`, limits: engineLimits(key.limits) } : null

/**
 * The team's end-user limits, for one end user on its own. The scope is named by a digest of the
 * end user, so a client's string never becomes part of a Redis key name whatever it holds.
 */
export function endUserScope(team: Team, endUser: string | null): Scope | null {
  if (endUser === null || !hasLimits(team.end_user_limits)) return null
  const id = `user:${createHash('sha256').update(endUser).digest('base64url').slice(0, 22)}`
  const shown = endUser.length > 64 ? `${endUser.slice(0, 64)}…` : endUser
  return { id, label: `end user ${JSON.stringify(shown)} of team '${team.id}'`, limits: engineLimits(team.end_user_limits) }
}

const present = (scopes: (Scope | null)[]): Scope[] => scopes.filter((s): s is Scope => s !== null)

/** The scopes that limit a request: its team, its team's limits for the model, its key, its end user. */
export function scopesFor(principal: Principal, model: string, endUser: string | null = null): Scope[] {
  const { team, key } = principal
  return present([teamScope(team), modelScope(team, model), keyScope(team, key), endUserScope(team, endUser)])
}

/** Every scope of a team (itself and each model it limits), and of one key if given. */
export function allScopes(team: Team, key?: ApiKeyRecord): Scope[] {
  return present([teamScope(team), ...Object.keys(team.model_limits).map((m) => modelScope(team, m)), key ? keyScope(team, key) : null])
}

/**
 * A duration as OpenAI writes it (Go's format): `120ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`. Seconds
 * are made from whole milliseconds with integer arithmetic: `toFixed` and a parse back, as this
 * once was, took six times as long (280 against 45 ns a call), and showed in CPU profiles.
 */
export function goDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms))
  if (total < 1000) return `${total}ms`
  const hours = Math.floor(total / 3_600_000)
  const minutes = Math.floor((total % 3_600_000) / 60_000)
  const seconds = secondsOfMinute(total % 60_000)
  if (hours > 0) return `${hours}h${minutes}m${seconds}`
  if (minutes > 0) return `${minutes}m${seconds}`
  return seconds
}

/** `ms` (below a minute) in seconds, to the millisecond, without trailing zeros: `0s`, `1.5s`, `59.999s`. */
function secondsOfMinute(ms: number): string {
  const whole = Math.floor(ms / 1000)
  let frac = ms % 1000
  if (frac === 0) return `${whole}s`
  let digits = 3
  while (frac % 10 === 0) {
    frac /= 10
    digits--
  }
  return `${whole}.${String(frac).padStart(digits, '0')}s`
}

export function rateLimitHeaders(rate: RateState): Record<string, string> {
  const headers: Record<string, string> = {}
  if (rate.requests) {
    headers['x-ratelimit-limit-requests'] = String(rate.requests.limit)
    headers['x-ratelimit-remaining-requests'] = String(rate.requests.remaining)
    headers['x-ratelimit-reset-requests'] = goDuration(rate.requests.resetMs)
  }
  if (rate.tokens) {
    headers['x-ratelimit-limit-tokens'] = String(rate.tokens.limit)
    headers['x-ratelimit-remaining-tokens'] = String(rate.tokens.remaining)
    headers['x-ratelimit-reset-tokens'] = goDuration(rate.tokens.resetMs)
  }
  if (rate.budget) {
    // Spend counterparts, in USD: the tightest budget, what is left once this request's reservation is in.
    headers['x-ratelimit-limit-usd'] = String(toUsd(rate.budget.limit))
    headers['x-ratelimit-remaining-usd'] = String(toUsd(Math.max(0, rate.budget.remaining)))
    headers['x-ratelimit-reset-usd'] = goDuration(rate.budget.resetMs)
  }
  return headers
}

const NAMES = {
  requests: 'requests per minute (RPM)',
  tokens: 'tokens per minute (TPM)',
  tokens_per_day: 'tokens per day (TPD)',
  tokens_per_month: 'tokens per month',
  concurrency: 'concurrent requests',
} as const

const BUDGETS = { usd_per_day: 'daily', usd_per_month: 'monthly' } as const
/** Micro-dollars as USD for a message: `$0.012345`. */
const dollars = (micros: number) => `$${toUsd(micros)}`

/**
 * A budget's 429. Spent until the period ends: insufficient_quota, naming the budget and when it
 * resets (no retry helps). Full only with what requests in flight reserved: retry shortly.
 */
function budgetError(r: Refusal & { kind: keyof typeof BUDGETS }, headers: Record<string, string>, seconds: string): GatewayError {
  const budget = `the ${BUDGETS[r.kind]} budget (${r.kind}) of ${r.scope}: Limit ${dollars(r.limit)}, Used ${dollars(r.used)}, Requested up to ${dollars(r.requested)}.`
  if (r.final) {
    const when = r.resetsAt === undefined ? '' : ` It resets at ${new Date(r.resetsAt).toISOString()}.`
    return new GatewayError('insufficient_quota', `You exceeded ${budget}${when}`, { headers })
  }
  return new GatewayError(
    'rate_limit_exceeded',
    `Requests in flight hold ${budget} (Used includes what they reserved.) Please try again in ${seconds}.`,
    { type: 'tokens', headers },
  )
}

/** The 429 a refusal becomes: which limit, the limit, used, requested, and when to retry. */
export function refusalError(r: Refusal): GatewayError {
  const seconds = goDuration(r.retryAfterMs)
  const headers: Record<string, string> = {
    'retry-after': String(Math.max(1, Math.ceil(r.retryAfterMs / 1000))),
    'retry-after-ms': String(Math.max(0, Math.round(r.retryAfterMs))),
  }
  const counts = `Limit ${r.limit}, Used ${r.used}, Requested ${r.requested}.`
  if (r.final) headers['x-should-retry'] = 'false'

  if (r.kind === 'usd_per_day' || r.kind === 'usd_per_month') return budgetError({ ...r, kind: r.kind }, headers, seconds)
  if (r.kind === 'concurrency') {
    return new GatewayError(
      'concurrency_limit_exceeded',
      `Too many concurrent requests on ${r.scope}: Limit ${r.limit}, In flight ${r.used}. Please try again in ${seconds}.`,
      {
        headers,
      },
    )
  }
  if ((r.kind === 'tokens_per_day' || r.kind === 'tokens_per_month') && r.final) {
    const when = r.resetsAt === undefined ? '' : ` It resets at ${new Date(r.resetsAt).toISOString()}.`
    return new GatewayError('insufficient_quota', `You exceeded the ${NAMES[r.kind]} quota of ${r.scope}: ${counts}${when}`, {
      headers,
    })
  }
  if (r.kind === 'tokens' && r.final) {
    return new GatewayError(
      'rate_limit_exceeded',
      `Request too large for ${NAMES.tokens} on ${r.scope}: Limit ${r.limit}, Requested ${r.requested}. Lower max_tokens or shorten the prompt.`,
      {
        type: 'tokens',
        headers,
      },
    )
  }
  const inFlight =
    r.kind === 'tokens_per_day' || r.kind === 'tokens_per_month' ? ' (Used includes tokens reserved by requests in flight.)' : ''
  return new GatewayError(
    'rate_limit_exceeded',
    `Rate limit reached for ${NAMES[r.kind]} on ${r.scope}: ${counts}${inFlight} Please try again in ${seconds}.`,
    {
      type: r.kind === 'requests' ? 'requests' : 'tokens',
      headers,
    },
  )
}
