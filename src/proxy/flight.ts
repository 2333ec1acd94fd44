import type { AlertNotifier } from '../alerts/notifier.js'
import type { AuditLog } from '../audit/types.js'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { GuardSettings } from '../config.js'
import type { RequestContext } from '../context.js'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { LeaseKeeper } from '../quota/leases.js'
import type { QuotaEngine } from '../quota/types.js'
import type { Principal } from '../store/types.js'
import { Cancel } from '../upstream/abort.js'
import type { UpstreamClient } from '../upstream/client.js'
import type { KeyPool } from '../upstream/key-pool.js'
import type { ModelRouter, ResolvedModel } from '../upstream/router.js'
import { estimatePromptTokens } from '../usage/estimate.js'
import { UsageMeter } from '../usage/meter.js'
import { endUserOf } from './check.js'
import type { Endpoint } from './endpoints.js'

/** What the proxy's steps are built with (app.ts). */
export interface ProxyOptions {
  router: ModelRouter
  upstreams: Map<string, UpstreamClient>
  pools: Map<string, KeyPool>
  quotas: QuotaEngine
  leases: LeaseKeeper
  audit: AuditLog
  /** Webhook alerts, when configured. */
  alerts: AlertNotifier | null
  now: () => number
  /** Completion tokens reserved when a request sets no max_tokens and its model has no default. */
  completionReservation: number
  metrics: Metrics
  guards: GuardSettings
}

/** One request on its way through the steps: what each step after the body reads and sets. */
export interface Flight {
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  readonly ctx: RequestContext
  readonly endpoint: Endpoint
  /** The client's body, checked (a max_tokens the gateway lowers is written into it); with an adapter, its chat translation. */
  readonly body: Record<string, unknown>
  /** The client's body as it came, before an adapter translated it (else the same as `body`). */
  readonly original: Record<string, unknown>
  readonly principal: Principal
  /** The end user the body names (`safety_identifier` or `user`), if any. */
  readonly endUser: string | null
  readonly resolved: ResolvedModel
  readonly opts: ProxyOptions
  /** The prompt's tokens: counted only when first asked for (a reservation, an estimate), then kept. */
  readonly promptTokens: () => number | Promise<number>
  /** The answer's usage, as it passes. */
  readonly meter: UsageMeter
  /** Cancels the upstream call: the client went away before the answer was complete. */
  readonly controller: Cancel
  /** The gateway asks a stream for its usage, and takes that event out for a client that did not. */
  readonly stripUsage: boolean
  /** A max_tokens admission lowered to what a quota can hold: the body then goes upstream written anew. */
  clamped: number | null
  /** When the request was admitted, by the quota clock. */
  started: number
  /** Whether the answer is a stream the gateway relays (for the open-streams gauge). */
  streaming: boolean
}

export function newFlight(
  request: FastifyRequest,
  reply: FastifyReply,
  endpoint: Endpoint,
  body: Record<string, unknown>,
  resolved: ResolvedModel,
  opts: ProxyOptions,
  original: Record<string, unknown> = body,
): Flight {
  const ctx = request.tg
  // Usage of a stream comes only when asked for: ask, and take that event out again for a
  // client that did not ask itself. A client that asked gets the stream untouched.
  const clientAskedUsage = (body.stream_options as { include_usage?: unknown } | null | undefined)?.include_usage === true
  let promptCount: number | Promise<number> | undefined
  const promptTokens = () => (promptCount ??= estimatePromptTokens(endpoint.kind, body))
  // The model that answers: usage is recorded against it (a fallback may take over).
  ctx.answeredBy = resolved.model.name
  return {
    request,
    reply,
    ctx,
    endpoint,
    body,
    original,
    resolved,
    opts,
    promptTokens,
    principal: request.principal!,
    endUser: endUserOf(body),
    meter: new UsageMeter(promptTokens),
    controller: new Cancel(),
    stripUsage: ctx.stream && endpoint.kind !== 'embeddings' && !clientAskedUsage,
    clamped: null,
    started: 0,
    streaming: false,
  }
}

export const clientGone = () => new GatewayError('client_closed_request', 'The client closed the connection.')
