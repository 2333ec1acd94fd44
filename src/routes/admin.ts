import type { FastifyPluginAsync, FastifyReply } from 'fastify'
import { ConsoleAuth, checkCsrf } from '../console/auth.js'
import { GatewayError, invalidRequest, fromStore } from '../errors.js'
import { bearerToken, generateClientKey, generateKeyId, hashClientKey, keyHint, secretsEqual } from '../keys.js'
import { mergeLimits } from '../limits.js'
import { lockedOut, type FailureLimiter } from '../plugins/client-auth.js'
import type { QuotaEngine } from '../quota/types.js'
import type { ApiKeyRecord, Store, Team } from '../store/types.js'
import {
  KEY_ID,
  createKeyBody,
  createTeamBody,
  mergeModelLimits,
  parseBody,
  patchKeyBody,
  patchTeamBody,
  rotateKeyBody,
} from './admin-bodies.js'
import { upstreamRoutes, type UpstreamsView } from './upstreams.js'
import { adminUsageRoute, quotaView } from './usage.js'

/**
 * The admin API, behind `Authorization: Bearer $ADMIN_TOKEN` (compared in constant time), or the
 * web console's admin session cookie with its CSRF token. It is only registered when ADMIN_TOKEN
 * is set; without it every /admin route answers 404.
 */

export interface AdminOptions {
  store: Store
  quotas: QuotaEngine
  adminToken: string
  now: () => number
  /** How long a rotated key keeps working by default. */
  rotationGraceSeconds: number
  /** Failed admin authentications per address (client-auth.ts has the client keys'). */
  failures: FailureLimiter
  onLimited?: () => void
  /** The web console's sessions, which stand in for the bearer token (the console's own pages). */
  console?: ConsoleAuth
  /** The upstreams' clients and key pools (GET /admin/upstreams). */
  upstreams: UpstreamsView
}

const teamView = (team: Team) => ({ object: 'team' as const, ...team })

const keyView = (key: ApiKeyRecord) => ({
  object: 'api_key' as const,
  id: key.id,
  team: key.team,
  name: key.name,
  hint: key.hint,
  limits: key.limits,
  allowed_models: key.allowed_models,
  created_at: key.created_at,
  expires_at: key.expires_at,
  revoked_at: key.revoked_at,
  last_used_at: key.last_used_at,
  replaced_by: key.replaced_by,
})

/** A fresh key record and its plaintext (which only the creating answer ever shows). */
export function newKey(
  team: string,
  { name, limits, allowed_models, expires_at }: Pick<ApiKeyRecord, 'name' | 'limits' | 'allowed_models' | 'expires_at'>,
  createdAt: string,
): { record: ApiKeyRecord; plaintext: string } {
  const plaintext = generateClientKey()
  const record: ApiKeyRecord = {
    id: generateKeyId(),
    team,
    name,
    hash: hashClientKey(plaintext),
    hint: keyHint(plaintext),
    limits,
    allowed_models,
    created_at: createdAt,
    expires_at,
    revoked_at: null,
    last_used_at: null,
    replaced_by: null,
  }
  return { record, plaintext }
}

const teamNotFound = (id: string) => new GatewayError('team_not_found', `No team with id '${id}'.`, { param: 'id' })
const keyNotFound = (id: string) => new GatewayError('key_not_found', `No key with id '${id}'.`, { param: 'id' })

/** /admin: the admin token checked on every route, then the team, key and usage routes. */
export const adminRoutes: FastifyPluginAsync<AdminOptions> = async (app, options) => {
  const { store, quotas, adminToken, now, failures, onLimited, console } = options
  // Wrong admin tokens count as failed authentications of the address (apart from wrong client
  // keys): past the limit, the address gets 429s, even with the right token, until the window passes.
  app.addHook('onRequest', async (request) => {
    const locked = lockedOut(await failures(request, { increment: false }).catch(() => ({ isAllowed: true })))
    if (locked) {
      onLimited?.()
      throw locked
    }
    const token = bearerToken(request.headers.authorization)
    // The console's pages: an admin session, and the session's CSRF token on every change.
    if (token === null && console && ConsoleAuth.sessionId(request) !== null) {
      const session = await console.require(request)
      if (session.role !== 'admin') throw new GatewayError('admin_only', "A client key's console session cannot use the admin API.")
      checkCsrf(request, session)
      return
    }
    if (token === null || !secretsEqual(token, adminToken)) {
      await failures(request).catch(() => undefined)
      throw new GatewayError('invalid_admin_token', 'A valid admin token is required: Authorization: Bearer $ADMIN_TOKEN.')
    }
  })

  await app.register(teamRoutes, options)
  await app.register(keyRoutes, options)
  await app.register(adminUsageRoute, { store, quotas, now })
  await app.register(upstreamRoutes, { ...options.upstreams, now })
}

/** Teams: create, list, read (with each limit's use), patch, delete. */
const teamRoutes: FastifyPluginAsync<AdminOptions> = async (app, { store, quotas, now }) => {
  const iso = () => new Date(now()).toISOString()

  app.post('/admin/teams', async (request, reply: FastifyReply) => {
    const body = parseBody(createTeamBody, request.body)
    const at = iso()
    const team: Team = {
      id: body.id,
      name: body.name ?? body.id,
      limits: body.limits ?? {},
      model_limits: body.model_limits ?? {},
      allowed_models: body.allowed_models ?? null,
      end_user_limits: body.end_user_limits ?? {},
      created_at: at,
      updated_at: at,
    }
    if (!(await fromStore(store.createTeam(team)))) {
      throw new GatewayError('team_exists', `A team with id '${body.id}' already exists.`, {
        param: 'id',
      })
    }
    return reply.code(201).send(teamView(team))
  })

  // ?include=quota: each team with its limits' current use (the console's list, in one request).
  app.get<{ Querystring: { include?: string } }>('/admin/teams', async (request) => {
    const include = request.query.include
    if (include !== undefined && include !== 'quota') {
      throw invalidRequest("Invalid query: include: must be 'quota'", 'include', 'invalid_value')
    }
    const teams = await fromStore(store.listTeams())
    if (include === undefined) return { object: 'list', data: teams.map(teamView) }
    const at = now()
    return { object: 'list', data: await Promise.all(teams.map(async (t) => ({ ...teamView(t), quota: await quotaView(quotas, t, at) }))) }
  })

  app.get<{ Params: { id: string } }>('/admin/teams/:id', async (request) => {
    const team = await fromStore(store.getTeam(request.params.id))
    if (!team) throw teamNotFound(request.params.id)
    // Each limit with its current use and what remains.
    return { ...teamView(team), quota: await quotaView(quotas, team, now()) }
  })

  app.patch<{ Params: { id: string } }>('/admin/teams/:id', async (request) => {
    const body = parseBody(patchTeamBody, request.body)
    const current = await fromStore(store.getTeam(request.params.id))
    if (!current) throw teamNotFound(request.params.id)
    const patch = {
      ...(body.name !== undefined ? { name: body.name } : {}),
      ...(body.limits !== undefined ? { limits: mergeLimits(current.limits, body.limits) } : {}),
      ...(body.model_limits !== undefined ? { model_limits: mergeModelLimits(current.model_limits, body.model_limits) } : {}),
      ...(body.allowed_models !== undefined ? { allowed_models: body.allowed_models } : {}),
      ...(body.end_user_limits !== undefined ? { end_user_limits: mergeLimits(current.end_user_limits, body.end_user_limits) } : {}),
    }
    const team = await fromStore(store.updateTeam(request.params.id, patch, iso()))
    if (!team) throw teamNotFound(request.params.id)
    return teamView(team)
  })

  app.delete<{ Params: { id: string } }>('/admin/teams/:id', async (request, reply) => {
    if (!(await fromStore(store.deleteTeam(request.params.id)))) throw teamNotFound(request.params.id)
    return reply.code(204).send()
  })
}

/** Keys: create (the plaintext shown once), rotate, list, read, patch, revoke. */
const keyRoutes: FastifyPluginAsync<AdminOptions> = async (app, { store, now, rotationGraceSeconds }) => {
  const iso = () => new Date(now()).toISOString()

  app.post<{ Params: { id: string } }>('/admin/teams/:id/keys', async (request, reply) => {
    const body = parseBody(createKeyBody, request.body)
    const expiresAt = body.expires_at ? new Date(body.expires_at).toISOString() : null
    if (expiresAt !== null && Date.parse(expiresAt) <= now()) {
      throw invalidRequest('Invalid request body: expires_at: must be in the future', 'expires_at', 'invalid_value')
    }
    const { record, plaintext } = newKey(
      request.params.id,
      { name: body.name ?? null, limits: body.limits ?? {}, allowed_models: body.allowed_models ?? null, expires_at: expiresAt },
      iso(),
    )
    if (!(await fromStore(store.createKey(record)))) throw teamNotFound(request.params.id)
    // The only time the plaintext leaves the gateway.
    return reply.code(201).send({ ...keyView(record), key: plaintext })
  })

  // Rotation: a new key with the same team, name and limits; the old one keeps working for the
  // grace period (its expiry moves no later than that), then fails like any expired key.
  app.post<{ Params: { id: string } }>('/admin/keys/:id/rotate', async (request, reply) => {
    const body = parseBody(rotateKeyBody, request.body)
    const old = KEY_ID.test(request.params.id) ? await fromStore(store.getKey(request.params.id)) : null
    if (!old) throw keyNotFound(request.params.id)
    const at = now()
    if (old.revoked_at !== null || (old.expires_at !== null && Date.parse(old.expires_at) <= at)) {
      throw new GatewayError('key_inactive', `Key '${old.id}' is revoked or expired; create a new key instead.`, {
        param: 'id',
      })
    }
    const { record, plaintext } = newKey(old.team, old, new Date(at).toISOString())
    if (!(await fromStore(store.createKey(record)))) throw teamNotFound(old.team)
    const graceEnds = at + (body.grace_seconds ?? rotationGraceSeconds) * 1000
    const oldExpiry = old.expires_at === null ? graceEnds : Math.min(Date.parse(old.expires_at), graceEnds)
    const updated = await fromStore(store.updateKey(old.id, { expires_at: new Date(oldExpiry).toISOString(), replaced_by: record.id }))
    return reply.code(201).send({ ...keyView(record), key: plaintext, replaces: updated ? keyView(updated) : null })
  })

  app.get<{ Params: { id: string } }>('/admin/teams/:id/keys', async (request) => {
    const team = await fromStore(store.getTeam(request.params.id))
    if (!team) throw teamNotFound(request.params.id)
    return { object: 'list', data: (await fromStore(store.listKeys(team.id))).map(keyView) }
  })

  app.get<{ Params: { id: string } }>('/admin/keys/:id', async (request) => {
    const key = KEY_ID.test(request.params.id) ? await fromStore(store.getKey(request.params.id)) : null
    if (!key) throw keyNotFound(request.params.id)
    return keyView(key)
  })

  app.patch<{ Params: { id: string } }>('/admin/keys/:id', async (request) => {
    const body = parseBody(patchKeyBody, request.body)
    const current = KEY_ID.test(request.params.id) ? await fromStore(store.getKey(request.params.id)) : null
    if (!current) throw keyNotFound(request.params.id)
    const patch = {
      ...(body.name !== undefined ? { name: body.name } : {}),
      ...(body.limits !== undefined ? { limits: mergeLimits(current.limits, body.limits) } : {}),
      ...(body.allowed_models !== undefined ? { allowed_models: body.allowed_models } : {}),
    }
    const key = await fromStore(store.updateKey(current.id, patch))
    if (!key) throw keyNotFound(request.params.id)
    return keyView(key)
  })

  app.delete<{ Params: { id: string } }>('/admin/keys/:id', async (request, reply) => {
    const revoked = KEY_ID.test(request.params.id) && (await fromStore(store.revokeKey(request.params.id, iso())))
    if (!revoked) throw keyNotFound(request.params.id)
    return reply.code(204).send()
  })
}
