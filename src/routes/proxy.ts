import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError, invalidRequest, modelNotFound } from '../errors.js'
import { mapTransportError, normaliseUpstreamError } from '../upstream/errors.js'
import { readLimited, type UpstreamClient } from '../upstream/client.js'
import { applyDefaults, type ModelRouter } from '../upstream/router.js'

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
}

export const ENDPOINTS: readonly Endpoint[] = [
  {
    name: 'chat',
    path: '/v1/chat/completions',
    upstreamPath: '/chat/completions',
    input: { field: 'messages', check: (v) => Array.isArray(v) && v.length > 0, expected: 'a non-empty array of messages' },
    defaults: true,
  },
  {
    name: 'completions',
    path: '/v1/completions',
    upstreamPath: '/completions',
    input: { field: 'prompt', check: (v) => typeof v === 'string' || (Array.isArray(v) && v.length > 0), expected: 'a string or a non-empty array' },
    defaults: true,
  },
  {
    name: 'embeddings',
    path: '/v1/embeddings',
    upstreamPath: '/embeddings',
    input: { field: 'input', check: (v) => (typeof v === 'string' && v.length > 0) || (Array.isArray(v) && v.length > 0), expected: 'a non-empty string or array' },
    defaults: false,
  },
]

export interface ProxyOptions {
  router: ModelRouter
  upstreams: Map<string, UpstreamClient>
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
  return b
}

/** Aborts the upstream call as soon as the client goes away before the answer is complete. */
function abortOnClientClose(reply: FastifyReply): AbortController {
  const controller = new AbortController()
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort()
  })
  return controller
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
    const upstream = opts.upstreams.get(resolved.upstream.name)
    if (!upstream) throw modelNotFound(ctx.model)
    if (!upstream.hasKeys && resolved.upstream.name === 'nvidia') {
      throw new GatewayError(503, "The gateway has no API key for upstream 'nvidia'; its operator must set NVIDIA_API_KEY.", {
        type: 'server_error',
        code: 'upstream_not_configured',
        headers: { 'x-should-retry': 'false' },
      })
    }

    const payload = JSON.stringify(applyDefaults(body, resolved, endpoint.defaults))
    const controller = abortOnClientClose(reply)
    let res
    try {
      res = await upstream.request({
        path: endpoint.upstreamPath,
        method: 'POST',
        body: payload,
        accept: ctx.stream ? 'text/event-stream' : 'application/json',
        requestId: request.id,
        signal: controller.signal,
      })
    } catch (err) {
      if (controller.signal.aborted) throw clientGone()
      throw mapTransportError(upstream.name, err)
    }
    ctx.upstreamStatus = res.statusCode

    if (res.statusCode >= 400 || res.statusCode === 202) {
      let text: string
      try {
        text = await readLimited(res.body)
      } catch (err) {
        if (controller.signal.aborted) throw clientGone()
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
    reply.code(res.statusCode)
    reply.header('content-type', typeof contentType === 'string' ? contentType : ctx.stream ? 'text/event-stream' : 'application/json')
    if (ctx.stream) {
      reply.header('cache-control', 'no-cache')
      reply.header('x-accel-buffering', 'no')
    } else if (typeof res.headers['content-length'] === 'string') {
      reply.header('content-length', res.headers['content-length'])
    }
    // The body stream goes out as it arrives: no buffering, no decoding, no re-framing.
    return reply.send(res.body)
  }
}

export const proxyRoutes: FastifyPluginAsync<ProxyOptions> = async (app, opts) => {
  for (const endpoint of ENDPOINTS) app.post(endpoint.path, handler(endpoint, opts))
}
