import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'
import { z } from 'zod'
import { GatewayError, fromStore } from '../errors.js'
import { hashClientKey, looksLikeClientKey, secretsEqual } from '../keys.js'
import { lockedOut, type FailureLimiter } from '../plugins/client-auth.js'
import type { QuotaEngine } from '../quota/types.js'
import { parseBody } from '../routes/admin-bodies.js'
import { answerUsage, quotaView } from '../routes/usage.js'
import type { Store } from '../store/types.js'
import { ConsoleAuth, adminDigest, checkCsrf, setSessionCookie } from './auth.js'
import { newCsrfToken, type ConsoleSession, type SessionStore } from './sessions.js'

/**
 * The web console at /console: its page and assets (built from web/ into dist/web), and its own
 * API: sign-in and sign-out, and a client key's read-only view of its team. The admin's pages
 * call the admin API itself (/admin), which takes the console's session cookie as well as the
 * bearer token; so the page and the API can never disagree.
 */

export interface ConsoleOptions {
  store: Store
  quotas: QuotaEngine
  sessions: SessionStore
  /** null: only client keys may sign in (the admin console is off, as the admin API is). */
  adminToken: string | null
  now: () => number
  sessionSeconds: number
  /** Failed sign-ins count with failed admin authentications of the address. */
  failures: FailureLimiter
  onLimited?: () => void
  /** Where the built page is; by default dist/web beside the compiled server. */
  assets?: string
}

/** The built page: dist/web, whether this module runs from src/console or dist/console. */
export const WEB_ASSETS = fileURLToPath(new URL('../../dist/web/', import.meta.url))

/**
 * No inline script or style, nothing from elsewhere, never framed. uPlot and Preact set styles
 * through the DOM (CSSOM), which style-src does not govern.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

const SECURITY_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
}

const signInBody = z.strictObject({ token: z.string().min(1).max(512) })

const sessionView = (session: ConsoleSession) => ({
  object: 'console.session' as const,
  role: session.role,
  team: session.team,
  key_id: session.key_id,
  csrf_token: session.csrf,
  expires_at: new Date(session.expires_at).toISOString(),
})

export const consoleRoutes: FastifyPluginAsync<ConsoleOptions> = async (app, options) => {
  const { store, quotas, sessions, adminToken, now, sessionSeconds, failures, onLimited } = options
  const auth = new ConsoleAuth({ sessions, store, adminToken, now })

  app.addHook('onSend', async (request, reply) => {
    reply.headers(SECURITY_HEADERS)
    if (request.url.startsWith('/console/api/')) reply.header('cache-control', 'no-store')
  })

  const root = options.assets ?? WEB_ASSETS
  if (existsSync(root)) {
    await app.register(fastifyStatic, {
      root,
      prefix: '/console/',
      index: 'index.html',
      decorateReply: false,
      // Fixed asset names, so each load asks whether they changed (ETag) rather than keep old ones.
      cacheControl: false,
      setHeaders: (reply) => void reply.header('cache-control', 'no-cache'),
    })
    app.get('/console', (_request, reply) => reply.redirect('/console/'))
  } else {
    app.log.warn({ assets: root }, 'the web console is not built (npm run build): /console answers 404')
  }

  // Sign-in: the admin token opens the admin console, a client key its team's view.
  app.post('/console/api/session', async (request, reply) => {
    const locked = lockedOut(await failures(request, { increment: false }).catch(() => ({ isAllowed: true })))
    if (locked) {
      onLimited?.()
      throw locked
    }
    const { token } = parseBody(signInBody, request.body)
    const at = now()
    const expires = at + sessionSeconds * 1000
    let session: ConsoleSession | null = null
    if (adminToken !== null && secretsEqual(token, adminToken)) {
      session = { role: 'admin', team: null, key_id: null, csrf: newCsrfToken(), admin: adminDigest(adminToken), expires_at: expires }
    } else if (looksLikeClientKey(token)) {
      const principal = await fromStore(store.authenticate(hashClientKey(token)))
      const key = principal?.key
      if (key && (key.expires_at === null || Date.parse(key.expires_at) > at)) {
        // A key's session ends no later than the key does.
        const until = key.expires_at === null ? expires : Math.min(expires, Date.parse(key.expires_at))
        session = { role: 'team', team: key.team, key_id: key.id, csrf: newCsrfToken(), admin: null, expires_at: until }
      }
    }
    if (session === null) {
      await failures(request).catch(() => undefined)
      throw new GatewayError(
        'invalid_sign_in',
        adminToken === null
          ? 'That is not an active client key. (The admin console is off: the gateway has no ADMIN_TOKEN.)'
          : 'That is neither the admin token nor an active client key.',
        { param: 'token' },
      )
    }
    const id = await fromStore(sessions.create(session, at))
    setSessionCookie(reply, request, id, Math.floor((session.expires_at - at) / 1000))
    return sessionView(session)
  })

  app.get('/console/api/session', async (request) => sessionView(await auth.require(request)))

  app.delete('/console/api/session', async (request, reply) => {
    const session = await auth.require(request)
    checkCsrf(request, session)
    await fromStore(sessions.delete(ConsoleAuth.sessionId(request)!))
    setSessionCookie(reply, request, null, 0)
    return reply.code(204).send()
  })

  /** A client key's session: its team, key and principal (the admin reads /admin instead). */
  const teamSession = async (session: ConsoleSession) => {
    if (session.role !== 'team') {
      throw new GatewayError('invalid_request', "This route serves a client key's session; the admin console reads /admin.")
    }
    const [team, key] = await Promise.all([fromStore(store.getTeam(session.team!)), fromStore(store.getKey(session.key_id!))])
    if (!team || !key)
      throw new GatewayError('invalid_session', 'The team or key your console session belongs to no longer exists. Sign in again.')
    return { team, key }
  }

  // The team view: its limits, what remains of each, the key that signed in.
  app.get('/console/api/team', async (request) => {
    const { team, key } = await teamSession(await auth.require(request))
    return {
      object: 'console.team',
      team: {
        id: team.id,
        name: team.name,
        limits: team.limits,
        model_limits: team.model_limits,
        allowed_models: team.allowed_models,
        end_user_limits: team.end_user_limits,
      },
      key: { id: key.id, name: key.name, hint: key.hint, limits: key.limits, expires_at: key.expires_at },
      quota: await quotaView(quotas, team, now(), { team, key }),
    }
  })

  // The team's usage: /admin/usage's report, held to the session's team.
  app.get('/console/api/usage', async (request, reply) => {
    const { team } = await teamSession(await auth.require(request))
    return answerUsage(request, reply, { store, quotas, now }, team.id)
  })
}
