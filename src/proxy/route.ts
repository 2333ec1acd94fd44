import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { Metrics } from '../metrics.js'
import type { ModelRouter } from '../upstream/router.js'
import { admit } from './admit.js'
import { checkBody } from './check.js'
import { ENDPOINTS, type Endpoint } from './endpoints.js'
import { clientGone, newFlight, type ProxyOptions } from './flight.js'
import { relay } from './relay.js'
import { resolveModel } from './resolve.js'
import { send } from './send.js'
import { modelLabel, settleWhenClosed } from './settle.js'

/**
 * POST /v1/chat/completions, /v1/completions, /v1/embeddings: a request goes through these steps,
 * each a module of this folder, in this order. Any step may refuse it with a GatewayError, which
 * the error handler answers in OpenAI's envelope.
 */
function handler(endpoint: Endpoint, opts: ProxyOptions) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    // 1. The body: JSON, a model name that can be a model, the endpoint's input, sane counts.
    const body = checkBody(endpoint, request.body)
    const ctx = request.tg
    ctx.endpoint = endpoint.name
    ctx.model = body.model as string
    ctx.stream = body.stream === true
    // 2. The model: one canonical name, its upstream and defaults.
    const flight = newFlight(request, reply, endpoint, body, resolveModel(opts, ctx.model, request.principal!), opts)
    // 3. The limits: admitted against every scope, or a 429 (a 400 for what could never fit).
    const ticket = await admit(flight)
    // 6. (From here on it settles exactly once, when its response closes, however it ends.)
    if (!settleWhenClosed(flight, ticket)) throw clientGone()
    // 4. Upstream, with its own key, retried and fallen back as configured.
    const dispatched = await send(flight)
    // 5. The answer: an error in OpenAI's envelope, a whole body, or the stream through the tap.
    return relay(flight, dispatched)
  }
}

export const proxyRoutes: FastifyPluginAsync<ProxyOptions> = async (app, opts) => {
  for (const endpoint of ENDPOINTS) app.post(endpoint.path, handler(endpoint, opts))
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
