import { randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { msSince } from '../context.js'
import type { Metrics } from '../metrics.js'
import { GatewayError, invalidRequest, modelNotFound, fromStore } from '../errors.js'
import { rateLimitHeaders, refusalError, scopesFor } from '../quota/http.js'
import type { LeaseKeeper } from '../quota/leases.js'
import { isoTime, utcDay, utcMonth } from '../quota/periods.js'
import type { AdmitResult, AuditEntry, QuotaEngine, Scope, Usage } from '../quota/types.js'
import { estimatePromptTokens, reservationTokens } from '../usage/estimate.js'
import { UsageMeter } from '../usage/meter.js'
import { mapTransportError, normaliseUpstreamError } from '../upstream/errors.js'
import { readAll, readLimited, WholeBody, type UpstreamClient } from '../upstream/client.js'
import { Cancel } from '../upstream/abort.js'
import { ClientGone, dispatch, type Dispatched } from '../upstream/dispatch.js'
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
}

function checkBody(endpoint: Endpoint, body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_json')
  }
  const b = body as Record<string, unknown>
  if (typeof b.model !== 'string' || b.model.trim() === '') {
    throw invalidRequest("'model' is required and must be a non-empty string.", 'model', 'missing_required_parameter')
  }
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
    const bodyFor = (r: ResolvedModel) => forwardBody(request.rawBody, body, r, endpoint.defaults, stripUsage)
    const candidates = opts.router.candidates(resolved)
    /** The model that answered: usage is recorded against it. */
    ctx.answeredBy = resolved.model.name

    const principal = request.principal!
    // The tokenizer runs only when a token limit needs a reservation, or later for an estimate.
    let promptCount: number | undefined
    const promptTokens = () => (promptCount ??= estimatePromptTokens(endpoint.name, body))
    const scopes = scopesFor(principal, resolved.model.name)
    const tokens = scopes.some(limitsTokens)
      ? reservationTokens(endpoint.name, applyDefaults(body, resolved, endpoint.defaults), promptTokens(), opts.completionReservation)
      : 0
    const started = opts.now()
    const record = (status: number, usage: Usage, estimated: boolean, now: number): AuditEntry => ({
      time: isoTime(now), request_id: request.id, team: principal.team.id, key_id: principal.key.id,
      model: ctx.answeredBy!, endpoint: endpoint.name, status, ...usage, estimated, latency_ms: now - started,
    })
    const audit = (entry: AuditEntry) =>
      opts.quotas.audit(entry).catch((err: unknown) => request.log.warn({ err: (err as Error).message }, 'could not write the audit stream'))

    // A request nothing limits needs no round trip (nor a promise): a ticket for accounting only.
    const requestId = randomUUID()
    const admitted: AdmitResult =
      scopes.length === 0
        ? { ok: true, rate: {}, ticket: { team: principal.team.id, requestId, scopes, tokens, day: utcDay(started), month: utcMonth(started) } }
        : await fromStore(opts.quotas.admit({ team: principal.team.id, requestId, scopes, tokens, now: started }))
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
    const finish = () => {
      if (!reply.raw.writableFinished) controller.abort()
      opts.leases.remove(lease)
      const { usage, estimated } = meter.result()
      const now = opts.now()
      const status = reply.raw.writableFinished ? reply.statusCode : 499
      const model = modelLabel(opts.router, ctx.answeredBy, status)
      const m = opts.metrics
      m.duration.series(endpoint.name, String(ctx.stream)).observe(msSince(ctx.started) / 1000)
      m.tokens.inc({ team: principal.team.id, model, kind: 'prompt' }, usage.prompt_tokens)
      m.tokens.inc({ team: principal.team.id, model, kind: 'completion' }, usage.completion_tokens)
      if (streaming) m.streamsOpen.dec()
      opts.quotas
        .settle({ ticket, keyId: principal.key.id, model: ctx.answeredBy!, usage, estimated, now })
        .catch((err: unknown) => request.log.error({ err, request_id: ticket.requestId }, 'could not record usage'))
      void audit(record(status, usage, estimated, now))
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
      const retryAfter = res.headers['retry-after']
      if (typeof retryAfter === 'string') reply.header('retry-after', retryAfter)
      if (normalised.credentialsRefused) reply.header('x-should-retry', 'false')
      return reply.code(normalised.status).send(normalised.body)
    }

    const contentType = res.headers['content-type']
    const isEventStream = typeof contentType === 'string' && contentType.startsWith('text/event-stream')
    reply.code(res.statusCode)
    reply.header('content-type', typeof contentType === 'string' ? contentType : ctx.stream ? 'text/event-stream' : 'application/json')
    const firstByte = () => opts.metrics.timeToFirstByte.series(endpoint.name, String(ctx.stream)).observe(msSince(ctx.started) / 1000)
    // An answer read whole (errors still become clean 502/504s).
    const readWhole = async (): Promise<Buffer> => {
      try {
        return await readAll(res.body)
      } catch (err) {
        meter.fail()
        if (controller.aborted) throw clientGone()
        throw mapTransportError(upstream.name, err)
      }
    }
    if (!isEventStream) {
      // A whole JSON answer, passed on unchanged.
      const answer = await readWhole()
      meter.readBody(answer)
      firstByte()
      return reply.header('content-length', answer.length).send(answer)
    }

    // An event stream that answers a request which did not ask for one was read whole (WholeBody):
    // it goes through the same tap as a stream, in one piece.
    const source = res.body instanceof WholeBody ? Readable.from([await readWhole()], { objectMode: false }) : res.body
    reply.header('cache-control', 'no-cache')
    reply.header('x-accel-buffering', 'no')
    streaming = true
    opts.metrics.streamsOpen.inc()
    // The stream goes out as it arrives: no buffering, no decoding, no re-framing; the tap only
    // reads (and in strip mode removes the one usage event the gateway asked for). Plain pipe
    // plus two listeners: stream.pipeline costs an AbortController per request.
    const tap = meter.tapStream(stripUsage)
    source.once('error', (err) => tap.destroy(err))
    tap.once('close', () => {
      if (!source.destroyed) source.destroy()
    })
    tap.once('data', firstByte)
    source.pipe(tap)
    return reply.send(tap)
  }
}

/** The model label of a request's metrics, bounded: a name nothing serves is 'other'; none (no valid body) is ''. */
function modelLabel(router: ModelRouter, name: string | null, status: number): string {
  if (name === null) return ''
  return status < 400 || router.isConfigured(name) ? name : 'other'
}

const ENDPOINT_BY_PATH = new Map(ENDPOINTS.map((e) => [e.path, e.name]))

/**
 * Counts a request to a proxied endpoint in tollgate_requests_total, whatever became of it:
 * answered, refused by a limit, a bad body or model, a missing or wrong key (team ''), a store or
 * upstream not there. Called as each request's answer closes.
 */
export function countRequest(metrics: Metrics, router: ModelRouter, request: FastifyRequest, reply: FastifyReply, finished: boolean): void {
  const endpoint = ENDPOINT_BY_PATH.get(request.routeOptions.url ?? '')
  if (endpoint === undefined) return
  const ctx = request.tg
  const status = finished ? reply.statusCode : 499
  metrics.requests.inc({ team: ctx.team ?? '', model: modelLabel(router, ctx.answeredBy ?? ctx.model, status), endpoint, status })
}

const limitsTokens = (s: Scope) =>
  s.limits.tokens_per_minute !== undefined || s.limits.tokens_per_day !== undefined || s.limits.tokens_per_month !== undefined

const NO_USAGE: Usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }

export const proxyRoutes: FastifyPluginAsync<ProxyOptions> = async (app, opts) => {
  for (const endpoint of ENDPOINTS) app.post(endpoint.path, handler(endpoint, opts))
}
