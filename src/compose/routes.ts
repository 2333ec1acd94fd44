import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config.js'
import { ConsoleAuth } from '../console/auth.js'
import { consoleRoutes } from '../console/routes.js'
import type { Metrics } from '../metrics.js'
import { clientAuth } from '../plugins/client-auth.js'
import { proxyRoutes } from '../proxy/route.js'
import { RedisKeys } from '../redis/keys.js'
import { adminRoutes } from '../routes/admin.js'
import { healthRoutes } from '../routes/health.js'
import { modelRoutes } from '../routes/models.js'
import { usageRoutes } from '../routes/usage.js'
import type { Data } from './data.js'
import type { Upstreams } from './upstreams.js'

export interface RouteParts {
  config: Config
  data: Data
  upstreams: Upstreams
  metrics: Metrics
  now: () => number
  /** The /metrics text. */
  scrape: () => Promise<string>
}

/**
 * Every route: /healthz and /readyz; /v1 behind client-key authentication (the proxied endpoints,
 * models, the key's own usage); /metrics unless it has a port of its own; the web console
 * (/console); /admin with an admin token or an admin's console session.
 */
export async function registerRoutes(app: FastifyInstance, parts: RouteParts): Promise<void> {
  const { config, data, upstreams, metrics, now } = parts
  const { store, redis, redisUp } = data
  const onLimited = () => metrics.rejections.inc({ kind: 'auth_failures' })

  // Failed authentications per client IP, shared through Redis when there is one: the
  // "count only failures, check before" pattern @fastify/rate-limit supports with increment: false.
  await app.register(rateLimit, { global: false, skipOnError: true, ...(redis ? { redis, nameSpace: new RedisKeys().authFailures } : {}) })
  const window = { max: config.quotas.authFailuresPerMinute, timeWindow: 60_000 }
  const authFailures = app.createRateLimit(window)
  // Wrong admin tokens are counted apart, so a client's wrong keys never lock out the operator.
  const adminFailures = app.createRateLimit({ ...window, keyGenerator: (request) => `admin:${request.ip}` })

  const backlogs = data.backlogs
  await app.register(healthRoutes, {
    store,
    redis: backlogs
      ? {
          up: redisUp,
          mode: config.redisFailureMode,
          buffers: () => {
            const { usage, audit } = backlogs()
            return { usage_buffer: usage, audit_buffer: audit }
          },
        }
      : null,
  })
  await app.register(async (v1) => {
    v1.addHook(
      'onRequest',
      clientAuth({
        store,
        now,
        failures: authFailures,
        activity: data.activity,
        cache: data.principals,
        serveStale: config.redisFailureMode === 'open',
        onLimited,
        storeAway: config.redisFailureMode === 'closed' && redis ? () => !redisUp() : undefined,
      }),
    )
    await v1.register(proxyRoutes, {
      metrics,
      router: upstreams.router,
      upstreams: upstreams.clients,
      pools: upstreams.pools,
      quotas: data.quotas,
      leases: data.leases,
      audit: data.audit,
      alerts: data.alerts,
      now,
      completionReservation: config.quotas.completionReservation,
      guards: config.guards,
    })
    await v1.register(modelRoutes, { config, upstreams: upstreams.clients, now })
    await v1.register(usageRoutes, { store, quotas: data.quotas, now })
  })
  if (config.metricsPort === null) {
    app.get('/metrics', async (_request, reply) => {
      const text = await parts.scrape()
      return reply.header('content-type', metrics.registry.contentType).send(text)
    })
  }
  const sessions = data.sessions
  await app.register(consoleRoutes, {
    store,
    quotas: data.quotas,
    sessions,
    adminToken: config.adminToken,
    now,
    sessionSeconds: config.console.sessionSeconds,
    failures: adminFailures,
    onLimited,
  })
  if (config.adminToken === null) app.log.warn('no ADMIN_TOKEN: the admin API (/admin) and admin console are off; /admin answers 404')
  else {
    await app.register(adminRoutes, {
      store,
      quotas: data.quotas,
      adminToken: config.adminToken,
      now,
      rotationGraceSeconds: config.keys.rotationGraceSeconds,
      failures: adminFailures,
      onLimited,
      console: new ConsoleAuth({ sessions, store, adminToken: config.adminToken, now }),
      upstreams: { clients: upstreams.clients, pools: upstreams.pools },
    })
  }
}
