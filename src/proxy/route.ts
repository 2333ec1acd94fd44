import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { Metrics } from '../metrics.js'
import type { ModelRouter } from '../upstream/router.js'
import { admit } from './admit.js'
import { checkBody } from './check.js'
import type { Adapter } from '../adapters/adapter.js'
import { countTokensBody, messagesToChat, parseMessagesBody } from '../adapters/messages-request.js'
import { estimatePromptTokens } from '../usage/estimate.js'
import { ENDPOINTS, type Endpoint } from './endpoints.js'
import { clientGone, newFlight, type ProxyOptions } from './flight.js'
import { relay } from './relay.js'
import { resolveModel } from './resolve.js'
import { send } from './send.js'
import { modelLabel, settleWhenClosed } from './settle.js'

/**
 * POST /v1/chat/completions, /v1/completions, /v1/embeddings, and /v1/messages and /v1/responses
 * (other protocols, translated to chat completions and back: adapters/): a request goes through these steps,
 * each a module of this folder, in this order. Any step may refuse it with a GatewayError, which
 * the error handler answers in OpenAI's envelope.
 */
function handler(endpoint: Endpoint, opts: ProxyOptions) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    // 1. The body: JSON, a model name that can be a model, the endpoint's input, sane counts (in
    // another protocol, translated to a chat completion first).
    const original = request.body as Record<string, unknown>
    const body = checkBody(endpoint, endpoint.adapter ? endpoint.adapter.toChat(original) : original)
    const ctx = request.tg
    ctx.endpoint = endpoint.name
    ctx.model = body.model as string
    ctx.stream = body.stream === true
    // 2. The model: one canonical name, its upstream and defaults.
    const flight = newFlight(request, reply, endpoint, body, resolveModel(opts, ctx.model, request.principal!), opts, original)
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
  for (const endpoint of ENDPOINTS) {
    if (endpoint.adapter) await app.register(adaptedRoutes, { endpoint, adapter: endpoint.adapter, handler: handler(endpoint, opts) })
    else app.post(endpoint.path, handler(endpoint, opts))
  }
}

/**
 * An adapted protocol's routes: its endpoint, and (for Messages) counting a prompt's tokens; every
 * error they answer, from any step or hook, goes out in the protocol's own envelope.
 */
const adaptedRoutes: FastifyPluginAsync<{ endpoint: Endpoint; adapter: Adapter; handler: ReturnType<typeof handler> }> = async (
  app,
  { endpoint, adapter, handler },
) => {
  const error = adapter.error
  if (error) {
    app.addHook('onSend', async (_request, reply, payload) => {
      if (reply.statusCode < 400 || typeof payload !== 'string') return payload
      try {
        const body = JSON.parse(payload) as Parameters<typeof error>[1]
        return body?.error?.message === undefined ? payload : JSON.stringify(error(reply.statusCode, body))
      } catch {
        return payload
      }
    })
  }
  app.post(endpoint.path, handler)
  if (endpoint.name === 'messages') {
    // Anthropic's token counting, from the gateway's tokenizer (nothing goes upstream or is counted).
    app.post(`${endpoint.path}/count_tokens`, async (request) => {
      const chat = messagesToChat(parseMessagesBody(request.body, countTokensBody))
      return { input_tokens: await estimatePromptTokens('chat', chat) }
    })
  }
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
