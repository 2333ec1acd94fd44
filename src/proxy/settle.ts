import { msSince, outcome } from '../context.js'
import type { AuditEntry } from '../audit/types.js'
import type { Ticket, Usage } from '../quota/types.js'
import { isoTime } from '../quota/periods.js'
import { costMicros, toUsd } from '../spend.js'
import type { ModelRouter } from '../upstream/router.js'
import type { Flight } from './flight.js'

/**
 * Step 6: settlement. From admission on, a request settles exactly once, when its response
 * closes, however it ends: its slot and reservation come back, its usage (the upstream's figures,
 * else an estimate) is counted against every limit it was admitted by, and its audit entry and
 * metrics are written. Returns false when the client had already gone (settled at once: nothing
 * is sent upstream).
 */
export function settleWhenClosed(f: Flight, ticket: Ticket): boolean {
  const { request, reply, ctx, opts, meter } = f
  const lease = opts.leases.add(ticket)
  // Nothing here may throw out of a 'close' listener: that would end the process, and every
  // stream of every team with it.
  const settle = async (status: number, now: number) => {
    const { usage, estimated, invalid } = await meter.result()
    if (invalid) {
      request.log.warn(
        { upstream: ctx.answeredBy, request_id: request.id },
        'the upstream reported usage that is not non-negative whole numbers: estimated instead',
      )
    }
    const model = modelLabel(opts.router, ctx.answeredBy, status)
    opts.metrics.tokens.inc({ team: f.principal.team.id, model, kind: 'prompt' }, usage.prompt_tokens)
    opts.metrics.tokens.inc({ team: f.principal.team.id, model, kind: 'completion' }, usage.completion_tokens)
    const cost = costMicros(usage, opts.router.price(ctx.answeredBy!))
    audit(f, status, usage, estimated, cost, now)
    const { key } = f.principal
    await opts.quotas.settle({ ticket, keyId: key.id, endUser: f.endUser, model: ctx.answeredBy!, usage, estimated, costMicros: cost, now })
    opts.alerts
      ?.afterSettle(f.principal, now)
      .catch((err: unknown) => request.log.warn({ err: (err as Error).message }, 'could not check alert thresholds'))
  }
  const finish = () => {
    const { status, aborted } = outcome(request, reply)
    const now = opts.now()
    try {
      // The client going away before the answer is complete cancels the upstream call at once.
      if (aborted) f.controller.abort()
      opts.leases.remove(lease)
      opts.metrics.duration.series(f.endpoint.name, String(ctx.stream)).observe(msSince(ctx.started) / 1000)
      if (f.streaming) opts.metrics.streamsOpen.dec()
    } catch (err) {
      request.log.error({ err, request_id: ticket.requestId }, 'error while closing a request')
    }
    settle(status, now).catch((err: unknown) => request.log.error({ err, request_id: ticket.requestId }, 'could not record usage'))
  }
  // A client that went away while it was being admitted has closed already, and 'close' will not
  // come again: settle now (its slot and reservation come back).
  if (reply.raw.closed) {
    meter.fail()
    finish()
    return false
  }
  reply.raw.once('close', finish)
  return true
}

/** Writes the request's audit entry (a failed write is logged, never thrown). */
export function audit(f: Flight, status: number, usage: Usage, estimated: boolean, cost: number, now: number): void {
  const entry: AuditEntry = {
    time: isoTime(now),
    request_id: f.request.id,
    team: f.principal.team.id,
    key_id: f.principal.key.id,
    end_user: f.endUser ?? '',
    model: f.ctx.answeredBy!,
    endpoint: f.endpoint.name,
    status,
    ...usage,
    estimated,
    cost_usd: toUsd(cost),
    latency_ms: now - f.started,
  }
  f.opts.audit.write(entry).catch((err: unknown) => f.request.log.warn({ err: (err as Error).message }, 'could not write the audit stream'))
}

/** The model label of a request's metrics: bounded (ModelRouter.label); none (no valid body) is ''. */
export function modelLabel(router: ModelRouter, name: string | null, status: number): string {
  return name === null ? '' : router.label(name, status < 400)
}
