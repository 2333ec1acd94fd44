import type { FastifyInstance, FastifyRequest } from 'fastify'
import { msSince, newRequestContext, outcome } from '../context.js'

const QUIET_ROUTES = new Set(['/healthz', '/readyz'])

/**
 * One log line per request, written when the response has closed, whether it finished or the
 * client went away (Fastify's onResponse only runs for responses that finished), so a stream's line
 * carries its whole duration: request id, team, key id (never the key), model, endpoint, stream
 * flag, status, upstream status and duration.
 * Health probes log at debug. `closed` is called at the same moment, for what else counts requests.
 */
export function registerRequestLog(app: FastifyInstance, closed: (request: FastifyRequest, status: number) => void): void {
  app.decorateRequest('tg', null as never)
  app.decorateRequest('principal', null)

  app.addHook('onRequest', (request, reply, done) => {
    request.tg = newRequestContext()
    reply.header('x-request-id', request.id)
    const writeLine = () => {
      const ctx = request.tg
      const { status, aborted } = outcome(request, reply)
      const url = request.routeOptions.url ?? request.url.split('?')[0] ?? ''
      // On the root logger, with the request id as Fastify's per-request child would bind it: no
      // child is made for a request that logs nothing else.
      const line = {
        reqId: request.id,
        method: request.method,
        url,
        team: ctx.team,
        key_id: ctx.keyId,
        model: ctx.model,
        endpoint: ctx.endpoint,
        stream: ctx.stream,
        status,
        upstream_status: ctx.upstreamStatus,
        duration_ms: msSince(ctx.started),
        gateway_ms: ctx.gatewayMs,
        upstream_ms: ctx.upstreamMs,
        aborted,
        ...(ctx.streamError ? { stream_error: ctx.streamError.code } : {}),
      }
      if (QUIET_ROUTES.has(url)) app.log.debug(line, 'request')
      else app.log.info(line, 'request')
      closed(request, status)
    }
    // A client that is gone already will not close again.
    if (reply.raw.closed) writeLine()
    else reply.raw.once('close', writeLine)
    done()
  })
}
