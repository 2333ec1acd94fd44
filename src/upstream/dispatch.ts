import type { FastifyBaseLogger } from 'fastify'
import { GatewayError } from '../errors.js'
import type { Cancel } from './abort.js'
import type { UpstreamClient, UpstreamResponse } from './client.js'
import { mapTransportError } from './errors.js'
import type { KeyPool, Pick } from './key-pool.js'
import type { ResolvedModel } from './router.js'

/**
 * Sends one client request upstream, before any byte has reached the client: with the key that has
 * the most room, retrying connection errors, 429 and 500/502/503/504 with backoff and jitter on
 * another key where there is one, then each fallback model in turn. Returns the answer to pass on
 * (which may still be an error, the last one) and the model that gave it.
 */

export interface DispatchOptions {
  candidates: ResolvedModel[]
  body: (resolved: ResolvedModel) => string
  clients: Map<string, UpstreamClient>
  pools: Map<string, KeyPool>
  path: string
  /** The client asked for a stream: the answer is passed on as it arrives, not read whole. */
  stream: boolean
  requestId: string
  signal: Cancel
  /** The most bytes of an answer read whole. */
  maxBytes?: number
  now: () => number
  log: FastifyBaseLogger
  /** Told of every attempt's time to headers, and of key pool events (for metrics). */
  observe?: {
    attempt(upstream: string, status: number, seconds: number): void
    keyEvent(upstream: string, event: 'cooldown' | 'refused' | 'exhausted'): void
  }
}

export interface Dispatched {
  res: UpstreamResponse
  resolved: ResolvedModel
  client: UpstreamClient
  /** The answering attempt's time from sending to response headers. */
  upstreamMs: number
}

export const RETRYABLE_STATUS = new Set([429, 500, 502, 503, 504])
/** Transport failures where the request surely or probably never reached the model. */
const RETRYABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
])

export class ClientGone extends Error {}

/** Exponential backoff with jitter: base · 2^attempt, capped at 8 · base, then 50–100 % of it. */
export function backoffMs(base: number, attempt: number, random = Math.random): number {
  return Math.round(Math.min(base * 2 ** attempt, base * 8) * (0.5 + random() / 2))
}

/** An HTTP date as RFC 9110 writes it (IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`. */
const HTTP_DATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/

/**
 * `retry-after` in seconds or as an HTTP date, in ms from now; null when absent or anything else
 * (Date.parse alone takes nearly any text with a number in it as a date: a key, say).
 */
export function retryAfterMs(header: string | string[] | undefined, now: number): number | null {
  if (typeof header !== 'string') return null
  const value = header.trim()
  if (/^\d{1,9}(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000)
  if (!HTTP_DATE.test(value)) return null
  const at = Date.parse(value)
  return Number.isNaN(at) ? null : Math.max(0, at - now)
}

const pause = (ms: number, signal: Cancel): Promise<void> => signal.sleep(ms, () => new ClientGone())

const NO_KEY = { ok: true, index: -1, key: undefined, label: 'none' } as const
const NO_RETRY = { 'x-should-retry': 'false' }

/** A key with room in its budget, waiting for one up to the upstream's bound. */
async function pickKey(pool: KeyPool, client: UpstreamClient, o: DispatchOptions, first: Pick) {
  const deadline = o.now() + client.config.keyWaitMs
  for (let picked = first; ; picked = await pool.pick(o.now())) {
    if (picked.ok) return picked
    if (picked.retryAfterMs === null) {
      throw new GatewayError(
        'upstream_auth_failed',
        `Upstream '${client.name}' refuses every one of the gateway's keys; its operator must fix them.`,
        {
          headers: { 'x-should-retry': 'false' },
        },
      )
    }
    if (o.now() + picked.retryAfterMs > deadline) {
      o.observe?.keyEvent(client.name, 'exhausted')
      const seconds = Math.max(1, Math.ceil(picked.retryAfterMs / 1000))
      throw new GatewayError(
        'upstream_keys_exhausted',
        `Every key of upstream '${client.name}' is at its request budget. Please try again in ${seconds}s.`,
        {
          headers: { 'retry-after': String(seconds), 'retry-after-ms': String(picked.retryAfterMs) },
        },
      )
    }
    await pause(picked.retryAfterMs, o.signal)
  }
}

/**
 * NVIDIA queues a request it cannot answer in time: 202 with an NVCF-REQID. Its status endpoint
 * then answers 202 while the request waits, and the request's own answer once it has one. Each
 * poll is held by the upstream for what is left of the deadline (up to a minute); before each, the
 * gateway waits a 202's `retry-after`, and at least MIN_POLL_INTERVAL_MS. All of it within the
 * request's one deadline. A 202 without an id is returned as it is (the route makes it a 504).
 */
const MIN_POLL_INTERVAL_MS = 250

async function waitForQueued(
  client: UpstreamClient,
  first: UpstreamResponse,
  key: string | undefined,
  o: DispatchOptions,
  timeLeft: (client: UpstreamClient) => number,
): Promise<UpstreamResponse> {
  let res = first
  for (let polls = 0; ; polls++) {
    const id = res.headers['nvcf-reqid']
    if (res.statusCode !== 202 || typeof id !== 'string' || id === '') return res
    await res.body.dump().catch(() => undefined)
    // (A status endpoint that answers 202 at once, instead of holding the call, is not hammered.)
    const wait = Math.max(retryAfterMs(res.headers['retry-after'], o.now()) ?? 0, MIN_POLL_INTERVAL_MS)
    await pause(Math.min(wait, timeLeft(client)), o.signal)
    if (polls === 0) o.log.info({ upstream: client.name, nvcf_reqid: id }, 'the upstream queued the request: polling its status')
    const waitMs = timeLeft(client)
    try {
      res = await client.poll(id, key, o.stream, o.signal, waitMs)
    } catch (err) {
      if (o.signal.aborted) throw new ClientGone()
      throw mapTransportError(client.name, err)
    }
  }
}

/**
 * The upstream refused a key (401/403). One request can draw a 403 that concerns its model (NVIDIA
 * refuses models a key is not entitled to): only a key refused for two models, or a 401, leaves
 * the rotation.
 */
async function keyRefused(
  client: UpstreamClient,
  pool: KeyPool,
  picked: { index: number; label: string },
  resolved: ResolvedModel,
  status: number,
  o: DispatchOptions,
) {
  if (client.refusals.refused(picked.index, resolved.model.name, status)) {
    o.observe?.keyEvent(client.name, 'refused')
    o.log.error(
      { upstream: client.name, key: picked.label, upstream_status: status },
      `upstream '${client.name}' refused key ${picked.label}: taken out of rotation`,
    )
    await pool.refuse(picked.index, o.now()).catch(() => undefined)
  } else {
    o.log.warn(
      { upstream: client.name, key: picked.label, model: resolved.model.name, upstream_status: status },
      `upstream '${client.name}' refused key ${picked.label} for this model; it stays in rotation unless refused for another model too`,
    )
  }
}

export async function dispatch(o: DispatchOptions): Promise<Dispatched> {
  // One deadline for every attempt: a hung upstream holds a client for its time to headers once,
  // not once per retry.
  const firstClient = o.candidates.map((c) => o.clients.get(c.upstream.name)).find((c) => c !== undefined)
  const deadline = o.now() + (firstClient?.config.timeouts.headersMs ?? 0)
  const timeLeft = (client: UpstreamClient) => {
    const left = deadline - o.now()
    if (left > 0) return left
    throw new GatewayError('upstream_timeout', `Upstream '${client.name}' did not answer in time.`, {
      headers: NO_RETRY,
    })
  }
  // Every attempt there may be: each candidate model, its first try and its retries.
  const plan: { resolved: ResolvedModel; attempt: number }[] = []
  for (const resolved of o.candidates) {
    const client = o.clients.get(resolved.upstream.name)
    if (!client) continue
    for (let attempt = 0; attempt <= client.config.retries; attempt++) plan.push({ resolved, attempt })
  }

  for (let step = 0; step < plan.length; step++) {
    const { resolved, attempt } = plan[step]!
    const client = o.clients.get(resolved.upstream.name)!
    const pool = o.pools.get(client.name)
    const last = step === plan.length - 1
    const sameModelNext = !last && plan[step + 1]!.resolved === resolved
    // Most picks are answered at once (a pool without budgets, or with keys to spare in memory).
    let picked: Pick | typeof NO_KEY = NO_KEY
    if (pool && pool.size > 0) {
      const answer = pool.pick(o.now())
      const first = answer instanceof Promise ? await answer : answer
      picked = first.ok ? first : await pickKey(pool, client, o, first)
    }

    let res: UpstreamResponse
    const headersTimeoutMs = Math.min(client.config.timeouts.headersMs, timeLeft(client))
    const sent = process.hrtime.bigint()
    try {
      res = await client.request(
        {
          path: o.path,
          method: 'POST',
          body: o.body(resolved),
          stream: o.stream,
          requestId: o.requestId,
          signal: o.signal,
          maxBytes: o.maxBytes,
          headersTimeoutMs,
        },
        picked.key,
      )
    } catch (err) {
      if (o.signal.aborted) throw new ClientGone()
      const code = (err as { code?: string }).code ?? ''
      if (last || !RETRYABLE_CODES.has(code)) throw mapTransportError(client.name, err)
      o.log.warn({ upstream: client.name, model: resolved.model.name, attempt, code }, 'upstream connection failed; retrying')
      if (sameModelNext) await pause(Math.min(backoffMs(client.config.retryBaseMs, attempt), timeLeft(client)), o.signal)
      continue
    }

    // A request the upstream queued is asked after until it has its answer (clients never see a 202).
    if (res.statusCode === 202) res = await waitForQueued(client, res, picked.key, o, timeLeft)
    const status = res.statusCode
    const upstreamMs = Number((process.hrtime.bigint() - sent) / 10_000n) / 100
    o.observe?.attempt(client.name, status, upstreamMs / 1000)
    if (status >= 400 && picked.index >= 0) {
      client.keyErrors.record(picked.index, { at: new Date(o.now()).toISOString(), status, model: resolved.model.name })
    }
    if ((status === 401 || status === 403) && pool && picked.index >= 0) {
      await keyRefused(client, pool, picked, resolved, status, o)
      if (last || pool.size < 2) return { res, resolved, client, upstreamMs }
      await res.body.dump().catch(() => undefined)
      continue
    }
    if (picked.index >= 0) client.refusals.accepted(picked.index)
    if (!RETRYABLE_STATUS.has(status) || last) return { res, resolved, client, upstreamMs }

    const wait = retryAfterMs(res.headers['retry-after'], o.now())
    if (status === 429 && pool && picked.index >= 0) {
      o.observe?.keyEvent(client.name, 'cooldown')
      await pool.coolDown(picked.index, o.now() + (wait ?? backoffMs(client.config.retryBaseMs * 4, attempt))).catch(() => undefined)
    }
    await res.body.dump().catch(() => undefined)
    o.log.warn(
      { upstream: client.name, model: resolved.model.name, attempt, upstream_status: status },
      'upstream answered an error; retrying',
    )
    // Another key is tried at once; the same one (or a lone key) only after a backoff.
    const otherKey = status === 429 && pool !== undefined && pool.size > 1
    if (sameModelNext && !otherKey) await pause(Math.min(backoffMs(client.config.retryBaseMs, attempt), timeLeft(client)), o.signal)
  }
  throw new GatewayError('upstream_unreachable', 'No upstream could take the request.')
}
