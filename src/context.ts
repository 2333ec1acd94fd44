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
  /** The answer was complete for the client (a stream's [DONE] went out) even if its connection then closed first. */
  complete: boolean
  /** A stream the gateway ended with an error event: the status it counts as, and the event's code. */
  streamError: { status: number; code: string } | null
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
  return {
    team: null,
    keyId: null,
    model: null,
    endpoint: null,
    stream: false,
    upstreamStatus: null,
    started: process.hrtime.bigint(),
    upstreamMs: null,
    gatewayMs: null,
    answeredBy: null,
    complete: false,
    streamError: null,
  }
}

/**
 * How a request ended, as its log line, metrics and usage record count it: a client that left
 * before the answer was complete is a 499; a stream the gateway ended with an error event counts
 * as that error's status (a 200 went out first); a stream whose [DONE] went out is complete, even
 * if the client closed the connection before the response's own end (the Python SDK does).
 */
export function outcome(request: FastifyRequest, reply: FastifyReply): { status: number; aborted: boolean } {
  const ctx = request.tg
  const finished = reply.raw.writableFinished || ctx.complete
  return { status: ctx.streamError?.status ?? (finished ? reply.statusCode : 499), aborted: !finished }
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
