import { randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { msSince, outcome } from '../context.js'
import type { GuardSettings } from '../config.js'
import type { Metrics } from '../metrics.js'
import { GatewayError, invalidRequest, modelNotFound, fromStore } from '../errors.js'
import { fittingCompletion, tooLargeForQuota, wholeTokenLimit } from '../quota/fit.js'
import { rateLimitHeaders, refusalError, scopesFor } from '../quota/http.js'
import type { LeaseKeeper } from '../quota/leases.js'
import { isoTime, utcDay, utcMonth } from '../quota/periods.js'
import type { AdmitResult, AuditEntry, QuotaEngine, Scope, Usage } from '../quota/types.js'
import { estimatePromptTokens, reservationTokens } from '../usage/estimate.js'
import { UsageMeter } from '../usage/meter.js'
import { mapTransportError, normaliseUpstreamError } from '../upstream/errors.js'
import { AnswerTooLarge, readAll, readLimited, WholeBody, type UpstreamClient } from '../upstream/client.js'
import { Cancel } from '../upstream/abort.js'
import { ClientGone, dispatch, RETRYABLE_STATUS, retryAfterMs, type Dispatched } from '../upstream/dispatch.js'
import type { KeyPool } from '../upstream/key-pool.js'
import { applyDefaults, forwardBody, type ModelRouter, type ResolvedModel } from '../upstream/router.js'

/**
 * POST /v1/chat/completions, /v1/completions, /v1/embeddings: check the body, resolve the model,
 * fill in its defaults, send it upstream with the upstream's own key, and hand the answer back:
 * JSON unchanged, streams byte for byte as they arrive, errors in OpenAI's envelope.
 */

export interface Endpoint {
  name: 'chat' | 'completions' | 'embeddings'
  path: string
  upstreamPath: string
  /** The field that carries the input, with a check of its type. */
  input: { field: string; check: (v: unknown) => boolean; expected: string }
  /** Whether model defaults (sampling parameters) apply. */
  defaults: boolean
  /** The counts a reservation is made of, checked when present. */
  counts: readonly Count[]
}

/** A whole-number field and its bounds, as OpenAI sets them. */
interface Count {
  field: string
  min: number
  max: number
}

/**
 * Checked here because the gateway reserves tokens by them before the upstream sees them: a
 * fraction or a string would be reserved as the default, and 1e300 as Infinity. A legacy
 * completion's max_tokens may be 0 (with `echo`, it scores a prompt without generating).
 */
const INT32 = 2_147_483_647
const COUNTS: readonly Count[] = [
  { field: 'max_tokens', min: 1, max: INT32 },
  { field: 'max_completion_tokens', min: 1, max: INT32 },
  { field: 'n', min: 1, max: 128 },
]

export const ENDPOINTS: readonly Endpoint[] = [
  {
    name: 'chat',
    path: '/v1/chat/completions',
    upstreamPath: '/chat/completions',
    input: { field: 'messages', check: (v) => Array.isArray(v) && v.length > 0, expected: 'a non-empty array of messages' },
    defaults: true,
    counts: COUNTS,
  },
  {
    name: 'completions',
    path: '/v1/completions',
    upstreamPath: '/completions',
    input: { field: 'prompt', check: (v) => typeof v === 'string' || (Array.isArray(v) && v.length > 0), expected: 'a string or a non-empty array' },
    defaults: true,
    counts: COUNTS.map((c) => (c.field === 'max_tokens' ? { ...c, min: 0 } : c)),
  },
  {
    name: 'embeddings',
    path: '/v1/embeddings',
    upstreamPath: '/embeddings',
    input: { field: 'input', check: (v) => (typeof v === 'string' && v.length > 0) || (Array.isArray(v) && v.length > 0), expected: 'a non-empty string or array' },
    defaults: false,
    counts: [],
  },
]

export interface ProxyOptions {
  router: ModelRouter
  upstreams: Map<string, UpstreamClient>
  pools: Map<string, KeyPool>
  quotas: QuotaEngine
  leases: LeaseKeeper
  now: () => number
  /** Completion tokens reserved when a request sets no max_tokens and its model has no default. */
  completionReservation: number
  metrics: Metrics
  guards: GuardSettings
}

function checkBody(endpoint: Endpoint, body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_json')
  }
  const b = body as Record<string, unknown>
  if (typeof b.model !== 'string' || b.model.trim() === '') {
    throw invalidRequest("'model' is required and must be a non-empty string.", 'model', 'missing_required_parameter')
  }
  checkModelName(b.model)
  const { field, check, expected } = endpoint.input
  if (!(field in b)) throw invalidRequest(`'${field}' is required.`, field, 'missing_required_parameter')
  if (!check(b[field])) throw invalidRequest(`'${field}' must be ${expected}.`, field, 'invalid_type')
  if ('stream' in b && b.stream !== null && typeof b.stream !== 'boolean') {
    throw invalidRequest("'stream' must be true or false.", 'stream', 'invalid_type')
  }
  if ('stream_options' in b && b.stream_options !== null && b.stream !== true) {
    throw invalidRequest("'stream_options' is only allowed when 'stream' is true.", 'stream_options', 'invalid_value')
  }
  for (const count of endpoint.counts) checkCount(b, count)
  return b
}

function checkCount(b: Record<string, unknown>, { field, min, max }: Count): void {
  const v = b[field]
  if (v === undefined || v === null) return
  if (typeof v !== 'number') {
    const got = Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`
    throw invalidRequest(`Invalid type for '${field}': expected an integer, but got ${got} instead.`, field, 'invalid_type')
  }
  if (Number.isFinite(v) && !Number.isInteger(v)) throw invalidRequest(`Invalid type for '${field}': expected an integer, but got a decimal number instead.`, field, 'invalid_type')
  if (v < min) throw invalidRequest(`Invalid '${field}': integer below minimum value. Expected a value >= ${min}, but got ${v} instead.`, field, 'integer_below_min_value')
  if (v > max) throw invalidRequest(`Invalid '${field}': integer above maximum value. Expected a value <= ${max}, but got ${v} instead.`, field, 'integer_above_max_value')
}

const clientGone = () =>
  new GatewayError(499, 'The client closed the connection.', { type: 'invalid_request_error', code: 'client_closed_request' })

function handler(endpoint: Endpoint, opts: ProxyOptions) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const body = checkBody(endpoint, request.body)
    const ctx = request.tg
    ctx.endpoint = endpoint.name
    ctx.model = body.model as string
    ctx.stream = body.stream === true

    // Resolved to one canonical name before limits, defaults, usage and metrics see it.
    const resolved = opts.router.resolve(ctx.model)
    if (resolved === null) throw modelNotFound(ctx.model)
    const primary = opts.upstreams.get(resolved.upstream.name)
    if (!primary) throw modelNotFound(ctx.model)
    const keyEnv = primary.config.keyEnv
    if (keyEnv !== null && !primary.hasKeys) {
      throw new GatewayError(503, `The gateway has no API key for upstream '${primary.name}'; its operator must set ${keyEnv}.`, {
        type: 'server_error',
        code: 'upstream_not_configured',
        headers: { 'x-should-retry': 'false' },
      })
    }

    // Usage of a stream comes only when asked for: ask, and take that event out again for a
    // client that did not ask itself. A client that asked gets the stream untouched.
    const clientAskedUsage = (body.stream_options as { include_usage?: unknown } | null | undefined)?.include_usage === true
    const stripUsage = ctx.stream && endpoint.name !== 'embeddings' && !clientAskedUsage
    /** A max_tokens the gateway lowered to what a quota can admit (then the body is written anew). */
    let clamped: number | null = null
    const bodyFor = (r: ResolvedModel) => forwardBody(clamped === null ? request.rawBody : null, body, r, endpoint.defaults, stripUsage)
    const candidates = opts.router.candidates(resolved)
    /** The model that answered: usage is recorded against it. */
    ctx.answeredBy = resolved.model.name

    const principal = request.principal!
    // The tokenizer runs only when a token limit needs a reservation, or later for an estimate;
    // a long prompt is counted in slices between turns of the event loop (a promise).
    let promptCount: number | Promise<number> | undefined
    const promptTokens = () => (promptCount ??= estimatePromptTokens(endpoint.name, body))
    const scopes = scopesFor(principal, resolved.model.name)
    let tokens = 0
    let prompt = 0
    const asked = (body.max_tokens ?? body.max_completion_tokens) as number | null | undefined
    const choices = typeof body.n === 'number' && body.n > 1 ? body.n : 1
    if (scopes.some(limitsTokens)) {
      const counted = promptTokens()
      prompt = typeof counted === 'number' ? counted : await counted
      tokens = reservationTokens(endpoint.name, applyDefaults(body, resolved, endpoint.defaults), prompt, opts.completionReservation)
      const whole = asked == null ? null : wholeTokenLimit(scopes)
      if (whole !== null && tokens > whole.limit) throw tooLargeForQuota(whole, prompt, asked!, choices)
    }
    const started = opts.now()
    const record = (status: number, usage: Usage, estimated: boolean, now: number): AuditEntry => ({
      time: isoTime(now), request_id: request.id, team: principal.team.id, key_id: principal.key.id,
      model: ctx.answeredBy!, endpoint: endpoint.name, status, ...usage, estimated, latency_ms: now - started,
    })
    const audit = (entry: AuditEntry) =>
      opts.quotas.audit(entry).catch((err: unknown) => request.log.warn({ err: (err as Error).message }, 'could not write the audit stream'))

    // A request nothing limits needs no round trip (nor a promise): a ticket for accounting only.
    const requestId = randomUUID()
    const admit = () => fromStore(opts.quotas.admit({ team: principal.team.id, requestId, scopes, tokens, now: started }))
    let admitted: AdmitResult =
      scopes.length === 0 ? { ok: true, rate: {}, ticket: { team: principal.team.id, requestId, scopes, tokens, day: utcDay(started), month: utcMonth(started) } } : await admit()
    if (!admitted.ok && asked == null && endpoint.name !== 'embeddings') {
      // The gateway's own default max_tokens does not fit what the quota has left: lower it.
      const fit = fittingCompletion(admitted.refusal, prompt, choices)
      if (fit !== null) {
        tokens = prompt + fit * choices
        admitted = await admit()
        if (admitted.ok) {
          clamped = fit
          body.max_tokens = fit
          reply.header('x-tollgate-max-tokens', String(fit))
        }
      }
    }
    if (!admitted.ok) {
      void audit(record(429, NO_USAGE, false, opts.now()))
      opts.metrics.rejections.inc({ kind: admitted.refusal.kind })
      throw refusalError(admitted.refusal)
    }
    const { ticket } = admitted
    if (admitted.rate.requests || admitted.rate.tokens) reply.headers(rateLimitHeaders(admitted.rate))

    // From here on, the request settles exactly once, when its response closes, however it ends.
    const meter = new UsageMeter(promptTokens)
    const lease = opts.leases.add(ticket)
    let streaming = false
    // The client going away before the answer is complete cancels the upstream call at once.
    const controller = new Cancel()
    // Nothing here may throw out of a 'close' listener: that would end the process, and every
    // stream of every team with it.
    const settle = async (status: number, now: number) => {
      const { usage, estimated, invalid } = await meter.result()
      if (invalid) {
        request.log.warn({ upstream: ctx.answeredBy, request_id: request.id }, 'the upstream reported usage that is not non-negative whole numbers: estimated instead')
      }
      const model = modelLabel(opts.router, ctx.answeredBy, status)
      opts.metrics.tokens.inc({ team: principal.team.id, model, kind: 'prompt' }, usage.prompt_tokens)
      opts.metrics.tokens.inc({ team: principal.team.id, model, kind: 'completion' }, usage.completion_tokens)
      void audit(record(status, usage, estimated, now))
      await opts.quotas.settle({ ticket, keyId: principal.key.id, model: ctx.answeredBy!, usage, estimated, now })
    }
    const finish = () => {
      const { status, aborted } = outcome(request, reply)
      const now = opts.now()
      try {
        if (aborted) controller.abort()
        opts.leases.remove(lease)
        opts.metrics.duration.series(endpoint.name, String(ctx.stream)).observe(msSince(ctx.started) / 1000)
        if (streaming) opts.metrics.streamsOpen.dec()
      } catch (err) {
        request.log.error({ err, request_id: ticket.requestId }, 'error while closing a request')
      }
      settle(status, now).catch((err: unknown) => request.log.error({ err, request_id: ticket.requestId }, 'could not record usage'))
    }
    // A client that went away while it was being admitted has closed already, and 'close' will not
    // come again: settle now (its slot and reservation come back), and send nothing upstream.
    if (reply.raw.closed) {
      meter.fail()
      finish()
      throw clientGone()
    }
    reply.raw.once('close', finish)

    // The gateway's own time if no upstream answer comes (an error's Server-Timing); replaced below.
    ctx.gatewayMs = msSince(ctx.started)
    let dispatched: Dispatched
    try {
      dispatched = await dispatch({
        candidates,
        body: bodyFor,
        clients: opts.upstreams,
        pools: opts.pools,
        path: endpoint.upstreamPath,
        stream: ctx.stream,
        requestId: request.id,
        signal: controller,
        maxBytes: opts.guards.answerMaxBytes,
        now: opts.now,
        log: request.log,
        observe: {
          attempt: (name, status, seconds) => opts.metrics.upstreamLatency.series(name, status).observe(seconds),
          keyEvent: (name, event) => opts.metrics.keyEvents.inc({ upstream: name, event }),
        },
      })
    } catch (err) {
      meter.fail()
      if (err instanceof ClientGone || controller.aborted) throw clientGone()
      throw err
    }
    const { res, client: upstream } = dispatched
    ctx.answeredBy = dispatched.resolved.model.name
    ctx.upstreamStatus = res.statusCode
    // Server-Timing: the gateway's own share so far, and the upstream's time to headers.
    ctx.upstreamMs = dispatched.upstreamMs
    ctx.gatewayMs = Math.max(0, Math.round((msSince(ctx.started) - dispatched.upstreamMs) * 100) / 100)
    opts.metrics.gatewayOverhead.series(endpoint.name).observe(ctx.gatewayMs / 1000)
    reply.header('server-timing', ctx.stream ? `gateway;dur=${ctx.gatewayMs}` : `gateway;dur=${ctx.gatewayMs}, upstream;dur=${ctx.upstreamMs}`)

    if (res.statusCode >= 400 || res.statusCode === 202) {
      meter.fail()
      let text: string
      try {
        text = await readLimited(res.body)
      } catch (err) {
        if (controller.aborted) throw clientGone()
        throw mapTransportError(upstream.name, err)
      }
      if (res.statusCode === 202) {
        // NVIDIA queues slow requests and expects polling; clients must never see a 202.
        throw new GatewayError(504, `Upstream '${upstream.name}' queued the request instead of answering; please retry.`, {
          type: 'server_error',
          code: 'upstream_timeout',
        })
      }
      const normalised = normaliseUpstreamError(upstream.name, res.statusCode, text, (s) => upstream.scrub(s))
      if (normalised.credentialsRefused) {
        request.log.error(
          { upstream: upstream.name, upstream_status: res.statusCode },
          `upstream '${upstream.name}' refused the gateway's API key: check its keys`,
        )
      }
      // Of the upstream's headers only a readable retry-after goes on, in the gateway's own words.
      const retryAfter = retryAfterMs(res.headers['retry-after'], opts.now())
      if (retryAfter !== null) reply.header('retry-after', String(Math.min(MAX_RETRY_AFTER_S, Math.ceil(retryAfter / 1000))))
      // The gateway has spent its own retries on these (429, 5xx) already; a client's SDK retrying
      // them at once would multiply the upstream calls of one client call. The upstream's
      // retry-after, when there is one, says when trying again can help.
      if (normalised.credentialsRefused || RETRYABLE_STATUS.has(res.statusCode)) reply.header('x-should-retry', 'false')
      return reply.code(normalised.status).send(normalised.body)
    }

    const contentType = contentTypeOf(res.headers['content-type'], ctx.stream)
    const isEventStream = contentType.startsWith('text/event-stream')
    const firstByte = () => opts.metrics.timeToFirstByte.series(endpoint.name, String(ctx.stream)).observe(msSince(ctx.started) / 1000)
    // An answer read whole, up to the gateway's limit (errors still become clean 502/504s).
    const readWhole = async (): Promise<Buffer> => {
      try {
        return await readAll(res.body, opts.guards.answerMaxBytes)
      } catch (err) {
        // (An answer past the limit was generated: its usage is estimated from the prompt.)
        if (!(err instanceof AnswerTooLarge)) meter.fail()
        if (controller.aborted) throw clientGone()
        throw mapTransportError(upstream.name, err)
      }
    }
    if (!isEventStream) {
      // A whole JSON answer, passed on unchanged.
      const answer = await readWhole()
      meter.readBody(answer)
      firstByte()
      return reply.code(res.statusCode).header('content-type', contentType).header('content-length', answer.length).send(answer)
    }

    // An event stream that answers a request which did not ask for one was read whole (WholeBody):
    // it goes through the same tap as a stream, in one piece.
    const source = res.body instanceof WholeBody ? Readable.from([await readWhole()], { objectMode: false }) : res.body
    streaming = true
    opts.metrics.streamsOpen.inc()
    // The stream goes out as it arrives: no decoding, no re-framing; the tap only reads (and in
    // strip mode removes the one usage event the gateway asked for), and ends the stream cleanly
    // past the gateway's limits. Plain pipe plus listeners: stream.pipeline costs an
    // AbortController per request.
    const guards = opts.guards
    const tap = meter.tapStream(stripUsage, { maxBytes: guards.streamMaxBytes, maxEventBytes: guards.streamMaxEventBytes })
    const sourceFailed = (err: Error) => {
      // Before the first event (or with the client gone) the request fails whole: a plain 502/504.
      if (!tap.begun || controller.aborted) return void tap.destroy(err)
      // After it, the stream ends cleanly with an error event the SDKs raise as an APIError, and
      // counts as the upstream's failure (a stall is a 504), not as the client leaving.
      const failure = mapTransportError(upstream.name, err)
      tap.cut(failure.code ?? 'upstream_error', `${failure.message} The stream was ended.`, failure.statusCode)
    }
    source.once('error', sourceFailed)
    tap.onDone = () => (ctx.complete = true)
    tap.onCut = (code, status) => {
      ctx.streamError = { status, code }
      // The upstream is no longer read; its end is not an error of the stream's.
      source.off('error', sourceFailed)
      source.on('error', () => undefined)
      source.unpipe(tap)
      source.destroy()
      request.log.warn({ upstream: upstream.name, code }, 'the upstream stream failed or passed a limit of the gateway: ended with an error event')
    }
    const tooLong = setTimeout(
      () => tap.cut('stream_too_long', `The upstream's stream ran past the gateway's limit of ${guards.streamMaxMs / 1000}s and was ended.`),
      guards.streamMaxMs,
    )
    tap.once('close', () => {
      clearTimeout(tooLong)
      if (source.destroyed) return
      // A stream whose [DONE] went out is read to its end, so its connection can serve again.
      if (ctx.complete) {
        source.unpipe(tap)
        source.on('error', () => undefined)
        source.resume()
      } else source.destroy()
    })
    source.pipe(tap)
    // Headers go out with the first event: an upstream that fails before it gets the client a
    // plain 502/504, not a 200 stream cut off.
    try {
      await tap.started
    } catch (err) {
      meter.fail()
      if (controller.aborted) throw clientGone()
      throw mapTransportError(upstream.name, err)
    }
    reply.code(res.statusCode).header('content-type', contentType).header('cache-control', 'no-cache').header('x-accel-buffering', 'no')
    // (A 'data' listener makes the tap flow: attached with the pipe, in the same turn, or the
    // first event would go to it alone.)
    tap.once('data', firstByte)
    return reply.send(tap)
  }
}

/** The longest retry-after passed on (seconds). */
const MAX_RETRY_AFTER_S = 86_400
const EVENT_STREAM = 'text/event-stream; charset=utf-8'
/** Upstream content types passed on as they are; any other is written in the gateway's words. */
const KNOWN_TYPES = new Set(['application/json', 'application/json; charset=utf-8', 'text/event-stream', EVENT_STREAM])

/**
 * The content type the client gets: the gateway's own spelling of the upstream's (whose header is
 * not copied: anything it holds would reach the client).
 */
function contentTypeOf(upstream: string | undefined, stream: boolean): string {
  if (upstream !== undefined && KNOWN_TYPES.has(upstream)) return upstream
  const type = upstream?.split(';', 1)[0]!.trim().toLowerCase()
  if (type === 'text/event-stream') return EVENT_STREAM
  if (type === 'text/plain') return 'text/plain; charset=utf-8'
  if (type === undefined || type === 'application/json') return stream && type === undefined ? EVENT_STREAM : 'application/json; charset=utf-8'
  return 'application/octet-stream'
}

/** Characters a model name never holds: whitespace, control and invisible format characters. */
const NOT_IN_A_NAME = /[\s\p{Cc}\p{Cf}]/u
const MAX_MODEL_NAME = 256

/** A name that cannot be a model gets a 400 naming `model`, before any limit or upstream sees it. */
function checkModelName(name: string): void {
  const problem =
    name.length > MAX_MODEL_NAME
      ? `is longer than ${MAX_MODEL_NAME} characters`
      : NOT_IN_A_NAME.test(name)
        ? 'holds whitespace or control characters'
        : name.split('/').includes('')
          ? 'has an empty path segment'
          : null
  if (problem !== null) throw invalidRequest(`The model name ${JSON.stringify(name.slice(0, MAX_MODEL_NAME))} ${problem}; no model is named so.`, 'model', 'invalid_model')
}

/** The model label of a request's metrics: bounded (ModelRouter.label); none (no valid body) is ''. */
function modelLabel(router: ModelRouter, name: string | null, status: number): string {
  return name === null ? '' : router.label(name, status < 400)
}

const ENDPOINT_BY_PATH = new Map(ENDPOINTS.map((e) => [e.path, e.name]))

/**
 * Counts a request to a proxied endpoint in tollgate_requests_total, whatever became of it:
 * answered, refused by a limit, a bad body or model, a missing or wrong key (team ''), a store or
 * upstream not there. Called as each request's answer closes.
 */
export function countRequest(metrics: Metrics, router: ModelRouter, request: FastifyRequest, status: number): void {
  const endpoint = ENDPOINT_BY_PATH.get(request.routeOptions.url ?? '')
  if (endpoint === undefined) return
  const ctx = request.tg
  metrics.requests.inc({ team: ctx.team ?? '', model: modelLabel(router, ctx.answeredBy ?? ctx.model, status), endpoint, status })
}

const limitsTokens = (s: Scope) =>
  s.limits.tokens_per_minute !== undefined || s.limits.tokens_per_day !== undefined || s.limits.tokens_per_month !== undefined

const NO_USAGE: Usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }

export const proxyRoutes: FastifyPluginAsync<ProxyOptions> = async (app, opts) => {
  for (const endpoint of ENDPOINTS) app.post(endpoint.path, handler(endpoint, opts))
}
