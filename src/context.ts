import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Principal } from './store/types.js'

/** What the gateway learns about a request as it goes, for the log line and later the usage record. */
export interface RequestContext {
  team: string | null
  keyId: string | null
  model: string | null
  endpoint: string | null
  stream: boolean
  upstreamStatus: number | null
  /** When the request arrived (process.hrtime.bigint()). */
  started: bigint
  /** Time upstream, from sending to its response headers (the answering attempt). */
  upstreamMs: number | null
  /** Time in the gateway itself before the answer started: auth, admission, forwarding. */
  gatewayMs: number | null
  /** The model that serves it: the one its name resolved to, then the one that answered (a fallback). Usage and metrics go to it. */
  answeredBy: string | null
}

/** Milliseconds since `started`, to 0.01 ms. */
export const msSince = (started: bigint): number => Number((process.hrtime.bigint() - started) / 10_000n) / 100

declare module 'fastify' {
  interface FastifyRequest {
    tg: RequestContext
    /** The authenticated key and its team (set by client authentication on /v1 routes). */
    principal: Principal | null
    /** The request body as the client sent it (JSON routes). */
    rawBody: string | null
  }
}

export function newRequestContext(): RequestContext {
  return { team: null, keyId: null, model: null, endpoint: null, stream: false, upstreamStatus: null, started: process.hrtime.bigint(), upstreamMs: null, gatewayMs: null, answeredBy: null }
}

/**
 * Server-Timing on an answer the gateway made itself (an error): its own time, to the answer or,
 * when the request went upstream, to that call (set there); the request's log line gets the same.
 * An answer that already has the header (one from upstream) keeps it.
 */
export function timeOwnAnswer(request: FastifyRequest, reply: FastifyReply): void {
  const ctx = request.tg as RequestContext | null
  if (ctx === null || reply.hasHeader('server-timing')) return
  ctx.gatewayMs ??= msSince(ctx.started)
  reply.header('server-timing', `gateway;dur=${ctx.gatewayMs}`)
}
