import { randomUUID } from 'node:crypto'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { DestinationStream, Logger } from 'pino'
import type { Config } from './config.js'
import './context.js'
import { createLogger } from './logger.js'
import { clientAuth } from './plugins/client-auth.js'
import { registerErrorHandling } from './plugins/error-handler.js'
import { registerRequestLog } from './plugins/request-log.js'
import { adminRoutes } from './routes/admin.js'
import { healthRoutes } from './routes/health.js'
import { modelRoutes } from './routes/models.js'
import { proxyRoutes } from './routes/proxy.js'
import { MemoryStore } from './store/memory.js'
import { RedisStore } from './store/redis.js'
import type { Store } from './store/types.js'
import { UpstreamClient } from './upstream/client.js'
import { ModelRouter } from './upstream/router.js'

export interface AppDeps {
  /** A store to use instead of the one the config names; the caller closes it. */
  store?: Store
  /** Where log lines go (default: stdout). */
  logStream?: DestinationStream
  logger?: Logger
  /** The clock, in ms since the epoch. */
  now?: () => number
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

function createStore(config: Config, log: Logger): Store {
  if (config.redisUrl) return new RedisStore({ url: config.redisUrl, log })
  log.warn('no REDIS_URL: using the embedded store; its teams and keys live in this process only and are gone when it exits')
  return new MemoryStore()
}

/** Builds the gateway from a complete config; nothing here reads the environment. */
export async function buildApp(config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const logger = deps.logger ?? createLogger(config.logLevel, deps.logStream)
  const now = deps.now ?? Date.now
  const ownStore = deps.store === undefined
  const store = deps.store ?? createStore(config, logger)

  const app: FastifyInstance = Fastify({
    // pino's Logger and Fastify's base logger type differ only in typing, not at run time.
    loggerInstance: logger as FastifyBaseLogger,
    // Our own onResponse hook writes the one line per request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    // Streams may run for many minutes; the upstream timeouts bound them instead.
    requestTimeout: 0,
    return503OnClosing: true,
  })

  // Any content type is read as JSON (curl -d sends form encoding by default); a body that is
  // not JSON gets a 400 in OpenAI's envelope.
  app.addContentTypeParser('*', { parseAs: 'string' }, app.getDefaultJsonParser('error', 'error'))

  registerErrorHandling(app, config.bodyLimitBytes)
  registerRequestLog(app)

  const upstreams = new Map(Object.values(config.upstreams).map((u) => [u.name, new UpstreamClient(u)]))
  for (const u of upstreams.values()) {
    if (!u.hasKeys && u.name === 'nvidia') logger.warn("no NVIDIA_API_KEY: requests routed to upstream 'nvidia' answer 503 until one is set")
  }
  const router = new ModelRouter(config)

  await app.register(healthRoutes, { store })
  await app.register(async (v1) => {
    v1.addHook('onRequest', clientAuth(store, now))
    await v1.register(proxyRoutes, { router, upstreams })
    await v1.register(modelRoutes, { config, upstreams, now })
  })
  if (config.adminToken !== null) {
    await app.register(adminRoutes, { store, adminToken: config.adminToken, now })
  }

  app.addHook('onClose', async () => {
    await Promise.all([...upstreams.values()].map((u) => u.close()))
    if (ownStore) await store.close()
  })

  return app
}
