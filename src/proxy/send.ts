import { mayUse } from '../access.js'
import { msSince } from '../context.js'
import { ClientGone, dispatch, type Dispatched } from '../upstream/dispatch.js'
import { forwardBody, type ResolvedModel } from '../upstream/router.js'
import { clientGone, type Flight } from './flight.js'

/**
 * Step 4: upstream. The request goes out with the upstream's own key (retried, on another key or a
 * fallback model, as dispatch.ts decides), its body as the client wrote it with the model's
 * defaults in front. Sets what the answer's Server-Timing and the log line say of the time taken.
 */
export async function send(f: Flight): Promise<Dispatched> {
  const { ctx, opts, endpoint, request } = f
  // The gateway's own time if no upstream answer comes (an error's Server-Timing); replaced below.
  ctx.gatewayMs = msSince(ctx.started)
  // (The client's own bytes go on when nothing was changed: not after a clamp, nor a translation.)
  const raw = f.clamped === null && !endpoint.adapter ? request.rawBody : null
  const bodyFor = (r: ResolvedModel) => forwardBody(raw, f.body, r, endpoint.defaults, f.stripUsage)
  let dispatched: Dispatched
  try {
    dispatched = await dispatch({
      // (Fallbacks the caller may not use are skipped.)
      candidates: opts.router.candidates(f.resolved).filter((r) => r === f.resolved || mayUse(f.principal, r)),
      body: bodyFor,
      clients: opts.upstreams,
      pools: opts.pools,
      path: endpoint.upstreamPath,
      stream: ctx.stream,
      requestId: request.id,
      signal: f.controller,
      maxBytes: opts.guards.answerMaxBytes,
      now: opts.now,
      log: request.log,
      observe: {
        attempt: (name, status, seconds) => opts.metrics.upstreamLatency.series(name, status).observe(seconds),
        keyEvent: (name, event) => opts.metrics.keyEvents.inc({ upstream: name, event }),
      },
    })
  } catch (err) {
    f.meter.fail()
    if (err instanceof ClientGone || f.controller.aborted) throw clientGone()
    throw err
  }
  ctx.answeredBy = dispatched.resolved.model.name
  ctx.upstreamStatus = dispatched.res.statusCode
  // Server-Timing: the gateway's own share so far, and the upstream's time to headers.
  ctx.upstreamMs = dispatched.upstreamMs
  ctx.gatewayMs = Math.max(0, Math.round((msSince(ctx.started) - dispatched.upstreamMs) * 100) / 100)
  opts.metrics.gatewayOverhead.series(endpoint.name).observe(ctx.gatewayMs / 1000)
  f.reply.header(
    'server-timing',
    ctx.stream ? `gateway;dur=${ctx.gatewayMs}` : `gateway;dur=${ctx.gatewayMs}, upstream;dur=${ctx.upstreamMs}`,
  )
  return dispatched
}
