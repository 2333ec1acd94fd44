import { randomUUID } from 'node:crypto'
import { mayUse } from '../access.js'
import { fromStore } from '../errors.js'
import { costMicros, type Price } from '../spend.js'
import { fittingCompletion, tooLargeForQuota, wholeTokenLimit } from '../quota/fit.js'
import { rateLimitHeaders, refusalError, scopesFor } from '../quota/http.js'
import { utcDay, utcHour, utcMonth } from '../quota/periods.js'
import type { AdmitResult, Scope, Ticket, Usage } from '../quota/types.js'
import { applyDefaults } from '../upstream/router.js'
import { reservationTokens } from '../usage/estimate.js'
import type { Flight } from './flight.js'
import { audit } from './settle.js'

/**
 * Step 3: the limits. The request is admitted against every scope that limits it (its team, the
 * team's limits for its model, its key), reserving its prompt and the most its answer may use, or
 * refused with a 429 saying which limit and when to retry. A request no quota could ever hold is a
 * 400 when the client chose its max_tokens, and gets a max_tokens that fits when the gateway did.
 */
export async function admit(f: Flight): Promise<Ticket> {
  const { body, endpoint, opts, principal, reply } = f
  const scopes = scopesFor(principal, f.resolved.model.name, f.endUser)
  let tokens = 0
  let prompt = 0
  const asked = (body.max_tokens ?? body.max_completion_tokens) as number | null | undefined
  const choices = typeof body.n === 'number' && body.n > 1 ? body.n : 1
  // The tokenizer runs only when a token limit or a budget needs a reservation (a long prompt is
  // counted in slices between turns of the event loop: a promise).
  const budgeted = scopes.some(hasBudget)
  if (budgeted || scopes.some(limitsTokens)) {
    const counted = f.promptTokens()
    prompt = typeof counted === 'number' ? counted : await counted
    tokens = reservationTokens(endpoint.kind, applyDefaults(body, f.resolved, endpoint.defaults), prompt, opts.completionReservation)
    const whole = asked == null ? null : wholeTokenLimit(scopes)
    if (whole !== null && tokens > whole.limit) throw tooLargeForQuota(whole, prompt, asked!, choices)
  }
  // Against a budget, the most the request may cost: its prompt and the most its answer may use,
  // at the highest price of the models that may answer it (a fallback may take over).
  const price = budgeted ? highestPrice(f) : null
  const costOf = (reserved: number) =>
    price === null ? 0 : costMicros({ prompt_tokens: prompt, completion_tokens: reserved - prompt, total_tokens: reserved }, price)
  let cost = costOf(tokens)
  const started = (f.started = opts.now())
  const team = principal.team.id
  // A request nothing limits needs no round trip (nor a promise): a ticket for accounting only.
  const requestId = randomUUID()
  const ask = () => fromStore(opts.quotas.admit({ team, requestId, scopes, tokens, cost, now: started }))
  let admitted: AdmitResult =
    scopes.length === 0
      ? {
          ok: true,
          rate: {},
          ticket: { team, requestId, scopes, tokens, day: utcDay(started), month: utcMonth(started), hour: utcHour(started) },
        }
      : await ask()
  if (!admitted.ok && asked == null && endpoint.kind !== 'embeddings') {
    // The gateway's own default max_tokens does not fit what the quota has left: lower it.
    const fit = fittingCompletion(admitted.refusal, prompt, choices)
    if (fit !== null) {
      tokens = prompt + fit * choices
      cost = costOf(tokens)
      admitted = await ask()
      if (admitted.ok) {
        f.clamped = fit
        body.max_tokens = fit
        reply.header('x-tollgate-max-tokens', String(fit))
      }
    }
  }
  if (!admitted.ok) {
    audit(f, 429, NO_USAGE, false, 0, opts.now())
    opts.metrics.rejections.inc({ kind: admitted.refusal.kind })
    throw refusalError(admitted.refusal)
  }
  if (admitted.rate.requests || admitted.rate.tokens || admitted.rate.budget) reply.headers(rateLimitHeaders(admitted.rate))
  return admitted.ticket
}

const limitsTokens = (s: Scope) =>
  s.limits.tokens_per_minute !== undefined || s.limits.tokens_per_day !== undefined || s.limits.tokens_per_month !== undefined

const hasBudget = (s: Scope) => s.limits.usd_per_day !== undefined || s.limits.usd_per_month !== undefined

/** The highest input and output prices among the request's model and the fallbacks it may use. */
function highestPrice(f: Flight): Price {
  const highest: Price = { inputMicros: 0, outputMicros: 0 }
  for (const r of f.opts.router.candidates(f.resolved)) {
    if (r !== f.resolved && !mayUse(f.principal, r)) continue
    const p = r.model.price
    if (p === null) continue
    highest.inputMicros = Math.max(highest.inputMicros, p.inputMicros)
    highest.outputMicros = Math.max(highest.outputMicros, p.outputMicros)
  }
  return highest
}

const NO_USAGE: Usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }
