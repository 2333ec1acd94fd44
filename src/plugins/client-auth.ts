import type { FastifyRequest, onRequestHookHandler } from 'fastify'
import { GatewayError, storeUnavailable } from '../errors.js'
import { apiKeyHeader, bearerToken, hashClientKey, looksLikeClientKey } from '../keys.js'
import type { KeyActivity } from '../store/key-activity.js'
import type { PrincipalCache } from '../store/principal-cache.js'
import type { Principal, Store } from '../store/types.js'

/** @fastify/rate-limit's limiter: counts (or, with increment: false, reads) failures per IP. */
export type FailureLimiter = (
  request: FastifyRequest,
  options?: { increment?: boolean },
) => Promise<{ isAllowed: boolean; isExceeded?: boolean; remaining?: number; ttlInSeconds?: number }>

/**
 * Authenticates a client key (`Authorization: Bearer tg-…`) against the store and puts its team
 * and key id on the request. Runs at onRequest, before the body is read. Messages never echo the
 * key.
 */
export interface ClientAuthOptions {
  store: Store
  now: () => number
  failures: FailureLimiter
  activity: KeyActivity
  /** Recently authenticated keys; with `serveStale`, also what serves while the store is away. */
  cache: PrincipalCache
  serveStale: boolean
  /** Told when an address is refused for too many failures. */
  onLimited?: () => void
  /** True while requests must be refused with a 503 (Redis away in the fail-closed mode). */
  storeAway?: () => boolean
}

/**
 * The 429 for an address whose failed authentications used up the limit, from a peek at its count
 * (which reads without adding: `remaining` 0 means the limit is used up); null if it may try.
 */
export function lockedOut(seen: Awaited<ReturnType<FailureLimiter>>): GatewayError | null {
  if (seen.isAllowed || !(seen.isExceeded || seen.remaining === 0)) return null
  const retry = Math.max(1, seen.ttlInSeconds ?? 60)
  return new GatewayError('auth_rate_limited', `Too many failed authentications from your address. Please try again in ${retry}s.`, {
    headers: { 'retry-after': String(retry), 'retry-after-ms': String(retry * 1000) },
  })
}

export function clientAuth({
  store,
  now,
  failures,
  activity,
  cache,
  serveStale,
  onLimited,
  storeAway,
}: ClientAuthOptions): onRequestHookHandler {
  const authenticate = async (hash: string) => {
    const cached = cache.get(hash, now())
    if (cached) return cached
    const epoch = cache.epoch
    try {
      const principal = await store.authenticate(hash)
      if (principal) cache.set(hash, principal, now(), epoch)
      else cache.delete(hash)
      return principal
    } catch (err) {
      const stale = serveStale ? cache.get(hash, now(), true) : undefined
      if (stale) return stale
      throw err
    }
  }
  const accept = (request: FastifyRequest, principal: Principal) => {
    activity.used(principal.key.id, now())
    request.tg.team = principal.key.team
    request.tg.keyId = principal.key.id
    request.principal = principal
  }
  const unexpired = (principal: Principal) => principal.key.expires_at === null || Date.parse(principal.key.expires_at) > now()

  /** A key not in the cache (or refused): the store lookup beside the failure check. */
  const slow = async (request: FastifyRequest, token: string | null, hash: string | null) => {
    const lookup = hash === null ? Promise.resolve(null) : authenticate(hash)
    // The failure count of this IP is read beside the lookup (no extra wait), and only a failure
    // adds to it, so one address cannot guess keys at speed.
    const [seen, found] = await Promise.allSettled([failures(request, { increment: false }), lookup])
    const locked = seen.status === 'fulfilled' ? lockedOut(seen.value) : null
    if (locked) {
      onLimited?.()
      throw locked
    }
    if (found.status === 'rejected') throw storeUnavailable(found.reason)
    const fail = async (message: string): Promise<never> => {
      await failures(request).catch(() => undefined)
      throw new GatewayError('invalid_api_key', message)
    }
    if (token === null) {
      return fail("You didn't provide an API key. Send it as 'Authorization: Bearer tg-…' (the OpenAI clients do this for you).")
    }
    const principal = found.value
    if (principal === null) return fail('Incorrect API key provided, or the key has been revoked.')
    if (!unexpired(principal)) return fail('This API key has expired.')
    accept(request, principal)
  }

  return (request, _reply, done) => {
    // Fail-closed means every request, not only those a limit needs Redis for: a key cached here
    // was last checked before Redis went away.
    if (storeAway?.()) return done(storeUnavailable(new Error('redis is down and the failure mode is closed')))
    // (Anthropic's clients send the key as x-api-key: /v1/messages takes it, as every /v1 route does.)
    const token = bearerToken(request.headers.authorization) ?? apiKeyHeader(request.headers['x-api-key'])
    const hash = token !== null && looksLikeClientKey(token) ? hashClientKey(token) : null
    // A key this instance knows is good needs neither a lookup nor the failure check: no round
    // trip, and not even a promise (this runs on every request).
    const known = hash === null ? undefined : cache.get(hash, now())
    if (known && unexpired(known)) {
      accept(request, known)
      done()
      return
    }
    slow(request, token, hash).then(() => done(), done)
  }
}
