import { hash } from 'node:crypto'
import { parseCookie, stringifySetCookie } from 'cookie'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { GatewayError, fromStore } from '../errors.js'
import { secretsEqual } from '../keys.js'
import type { Store } from '../store/types.js'
import type { ConsoleSession, SessionStore } from './sessions.js'

/** The console's session cookie: HttpOnly, SameSite=Strict, Secure over TLS, expiring with the session. */
export const SESSION_COOKIE = 'tollgate_session'
/** The header every state-changing console request carries its session's CSRF token in. */
export const CSRF_HEADER = 'x-csrf-token'
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

/** A digest of the admin token, kept in admin sessions: when the token changes, they end. */
export const adminDigest = (token: string) => hash('sha256', `tollgate console\n${token}`, 'base64url')

export interface ConsoleAuthOptions {
  sessions: SessionStore
  store: Store
  adminToken: string | null
  now: () => number
}

/**
 * Who a console request comes from, by its session cookie. A client key's session lasts only as
 * long as its key: revoked or expired, the session ends with it.
 */
export class ConsoleAuth {
  constructor(private readonly options: ConsoleAuthOptions) {}

  /** The cookie's session id, if the request carries one. */
  static sessionId(request: FastifyRequest): string | null {
    const header = request.headers.cookie
    if (header === undefined) return null
    return parseCookie(header)[SESSION_COOKIE] ?? null
  }

  /** The request's live session, or null (no cookie, expired, signed out, or its credential gone). */
  async session(request: FastifyRequest): Promise<ConsoleSession | null> {
    const id = ConsoleAuth.sessionId(request)
    if (id === null) return null
    const { sessions, store, adminToken, now } = this.options
    const session = await fromStore(sessions.get(id, now()))
    if (session === null) return null
    if (session.role === 'admin') {
      return adminToken !== null && session.admin !== null && secretsEqual(session.admin, adminDigest(adminToken)) ? session : null
    }
    const key = session.key_id === null ? null : await fromStore(store.getKey(session.key_id))
    const active = key !== null && key.revoked_at === null && (key.expires_at === null || Date.parse(key.expires_at) > now())
    if (!active) {
      await sessions.delete(id).catch(() => undefined)
      return null
    }
    return session
  }

  /** The request's live session; a 401 without one. */
  async require(request: FastifyRequest): Promise<ConsoleSession> {
    const session = await this.session(request)
    if (session === null) throw invalidSession()
    return session
  }
}

export const invalidSession = () =>
  new GatewayError('invalid_session', 'Your console session has expired or was signed out. Sign in again at /console.')

/** State-changing requests must echo the session's CSRF token (a cross-site page cannot read it). */
export function checkCsrf(request: FastifyRequest, session: ConsoleSession): void {
  if (SAFE_METHODS.has(request.method)) return
  const given = request.headers[CSRF_HEADER]
  if (typeof given !== 'string' || !secretsEqual(given, session.csrf)) {
    throw new GatewayError('csrf_token_invalid', `This request must carry the session's CSRF token in the ${CSRF_HEADER} header.`)
  }
}

/** Sets (or, with `value` null, clears) the session cookie. */
export function setSessionCookie(reply: FastifyReply, request: FastifyRequest, value: string | null, maxAgeSeconds: number): void {
  reply.header(
    'set-cookie',
    stringifySetCookie({
      name: SESSION_COOKIE,
      value: value ?? '',
      path: '/',
      httpOnly: true,
      sameSite: 'strict',
      secure: request.protocol === 'https',
      maxAge: value === null ? 0 : maxAgeSeconds,
    }),
  )
}
