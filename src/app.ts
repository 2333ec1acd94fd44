import { randomUUID } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { DestinationStream, Logger } from 'pino'
import type { Config, TeamSeed } from './config.js'
import './context.js'
import { draining } from './errors.js'
import { firstRunKey } from './first-run.js'
import { createLogger, LazyRequestLogger } from './logger.js'
import { clientAuth } from './plugins/client-auth.js'
import { clientErrorHandler, registerErrorHandling } from './plugins/error-handler.js'
import { registerJsonBody } from './plugins/json-body.js'
import { registerRequestLog } from './plugins/request-log.js'
import { adminRoutes } from './routes/admin.js'
import { healthRoutes } from './routes/health.js'
import { modelRoutes } from './routes/models.js'
import { countRequest, proxyRoutes } from './proxy/route.js'
import rateLimit from '@fastify/rate-limit'
import { Cluster } from 'ioredis'
import type { Counter } from 'prom-client'
import { Metrics } from './metrics.js'
import { LeaseKeeper } from './quota/leases.js'
import { MemoryQuotas } from './quota/memory.js'
import { RedisQuotas } from './quota/redis.js'
import { ResilientQuotas } from './quota/resilient.js'
import type { QuotaEngine } from './quota/types.js'
import { usageRoutes } from './routes/usage.js'
import { KeyActivity } from './store/key-activity.js'
import { MemoryStore } from './store/memory.js'
import { PrincipalCache } from './store/principal-cache.js'
import { REDIS_OPTIONS, RedisStore, evictionPolicy } from './store/redis.js'
import type { Store } from './store/types.js'
import { UpstreamClient } from './upstream/client.js'
import { FallbackKeyPool, KEY_STATES, MemoryKeyPool, RedisKeyPool, type KeyPool } from './upstream/key-pool.js'
import { ModelRouter } from './upstream/router.js'

export interface AppDeps {
  /** A store to use instead of the one the config names; the caller closes it. */
  store?: Store
  /** Quotas to use; by default Redis quotas on a Redis store's client, else in memory. */
  quotas?: QuotaEngine
  /** Where log lines go (default: stdout). */
  logStream?: DestinationStream
  logger?: Logger
  /** The clock, in ms since the epoch. */
  now?: () => number
  /** A first run (first-run.ts): make team `default` and a key of it, kept in `app.firstRunKey`. */
  firstRun?: boolean
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
/** How long an idle client connection stays open (Fastify's default, kept on purpose: see buildApp). */
const KEEP_ALIVE_MS = 72_000

function createStore(config: Config, log: Logger): Store {
  if (config.redisClusterNodes) {
    // No auto-pipelining on a cluster: ioredis refuses pipelines that mix slots of one node.
    const client = new Cluster(config.redisClusterNodes, {
      enableOfflineQueue: false,
      redisOptions: { ...REDIS_OPTIONS, enableAutoPipelining: false },
    })
    return new RedisStore({ client, log, ownsClient: true })
  }
  if (config.redisUrl) return new RedisStore({ url: config.redisUrl, log })
  log.warn('no REDIS_URL: using the embedded store; its teams and keys live in this process only and are gone when it exits')
  return new MemoryStore()
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
    /** The /metrics text (for a separate METRICS_PORT listener). */
    scrape: () => Promise<string>
    /** On a first run, the plaintext of the key made for it; else null. */
    firstRunKey: string | null
  }
}

const NO_BACKLOG = { waiting: 0, dropped: 0 }

/** What /metrics reads rather than counts. */
interface ScrapeSources {
  metrics: Metrics
  resilient: ResilientQuotas | null
  pools: Map<string, KeyPool>
  now: () => number
}

/** The metrics text, with what is read rather than counted brought up to date. */
export async function scrape({ metrics, resilient, pools, now }: ScrapeSources): Promise<string> {
  // Counts kept since start by the quotas: the counters take their values.
  const sinceStart = (counter: Counter, count: number) => {
    counter.reset()
    counter.inc(count)
  }
  const backlogs = resilient?.backlogs() ?? { usage: NO_BACKLOG, audit: NO_BACKLOG }
  for (const name of ['usage', 'audit'] as const) {
    metrics.buffers[name].size.set(backlogs[name].waiting)
    sinceStart(metrics.buffers[name].dropped, backlogs[name].dropped)
  }
  sinceStart(metrics.localAdmissions, resilient?.localAdmissions ?? 0)
  // (A pool on Redis answers from the instance's own view when Redis fails: FallbackKeyPool.)
  await Promise.all(
    [...pools].map(async ([upstream, pool]) => {
      const states = await pool.states(now())
      for (const state of KEY_STATES) metrics.upstreamKeys.set({ upstream, state }, states[state])
    }),
  )
  return metrics.registry.metrics()
}

/** Teams declared in the config file exist, with the file's limits. */
async function seedTeam(store: Store, seed: TeamSeed, now: () => number): Promise<void> {
  const at = new Date(now()).toISOString()
  const created = await store.createTeam({
    id: seed.id,
    name: seed.name ?? seed.id,
    limits: seed.limits,
    model_limits: seed.model_limits,
    created_at: at,
    updated_at: at,
  })
  if (!created) {
    await store.updateTeam(seed.id, { limits: seed.limits, model_limits: seed.model_limits, ...(seed.name ? { name: seed.name } : {}) }, at)
  }
}

const AWAITING_FIRST_REQUEST = Symbol('awaiting first request')

/**
 * A connection that sends no request within `ms` of opening (or stops sending one half-way) is
 * closed. Node's own header timeout only starts at a request's first byte, so sockets that never
 * send one would stay open for ever and use up the process's file descriptors. From the first
 * request on, Node's header, request and keep-alive timeouts take over.
 */
function closeSilentConnections(server: Server, ms: number): void {
  server.on('connection', (socket: Socket & { [AWAITING_FIRST_REQUEST]?: boolean }) => {
    // (With no request on the socket, Node's timeout handler destroys it.)
    socket.setTimeout(ms)
    socket[AWAITING_FIRST_REQUEST] = true
  })
  server.on('request', (request: IncomingMessage) => {
    const socket = request.socket as Socket & { [AWAITING_FIRST_REQUEST]?: boolean }
    if (socket[AWAITING_FIRST_REQUEST]) {
      socket[AWAITING_FIRST_REQUEST] = false
      socket.setTimeout(0)
    }
  })
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
    // Per-request children only when something logs through them (the request line does not).
    childLoggerFactory: (parent, bindings, options) =>
      new LazyRequestLogger(parent as Logger, bindings, options) as unknown as FastifyBaseLogger,
    // Our own onResponse hook writes the one line per request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    // A request's headers and body must arrive within these (a response may then take as long as
    // the upstream does); they are checked every second, and idle sockets that never send a byte
    // are closed too. Fastify's own clientError answers are replaced by OpenAI's envelope.
    requestTimeout: config.guards.requestTimeoutMs,
    http: { headersTimeout: config.guards.headersTimeoutMs, connectionsCheckingInterval: 1_000 },
    clientErrorHandler,
    // Longer than a balancer keeps an idle connection (deploy/nginx.conf: 60 s), so the balancer,
    // not the gateway, ends it: a request sent on a connection the gateway is closing is lost, and
    // nginx answers a lost POST with a 502 rather than send it again.
    keepAliveTimeout: KEEP_ALIVE_MS,
    // Requests that arrive while the gateway drains get its own 503, in OpenAI's envelope (below):
    // Fastify's has a body of its own shape.
    return503OnClosing: false,
    // A hop count is valid at run time; Fastify's types leave numbers out.
    trustProxy: config.trustProxy as boolean | string,
  })

  // Beyond this many client connections, new ones are refused at once, so the gateway keeps the
  // file descriptors it needs for its upstreams and Redis.
  app.server.maxConnections = config.guards.maxConnections
  closeSilentConnections(app.server, config.guards.headersTimeoutMs)

  // Any content type is read as JSON; a body that is not JSON gets a 400 in OpenAI's envelope.
  registerJsonBody(app)

  registerErrorHandling(app, config.bodyLimitBytes)
  const metrics = new Metrics({ defaultMetrics: true })
  app.decorate('metrics', metrics)
  const router = new ModelRouter(config)
  // Requests to the proxied endpoints are counted as they close, like their log lines.
  registerRequestLog(app, (request, status) => countRequest(metrics, router, request, status))
  // From the start of app.close(): new requests on open connections are refused, and their
  // connections closed, while the requests in flight finish.
  let closing = false
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
  app.addHook('onRequest', (_request, _reply, done) => done(closing ? draining() : undefined))

  const upstreams = new Map(Object.values(config.upstreams).map((u) => [u.name, new UpstreamClient(u)]))
  for (const u of upstreams.values()) {
    if (!u.hasKeys && u.config.keyEnv !== null)
      logger.warn(`no ${u.config.keyEnv}: requests routed to upstream '${u.name}' answer 503 until one is set`)
  }
  const redisStore = store instanceof RedisStore ? store : null
  const redis = redisStore?.client ?? null
  const redisUp = () => redisStore?.up ?? true
  // With Redis, quotas and key budgets survive an outage as the failure mode says (resilient.ts).
  const resilient = redis
    ? new ResilientQuotas({
        primary: new RedisQuotas({
          client: redis,
          usageRetentionDays: config.quotas.usageRetentionDays,
          auditMaxLen: config.quotas.auditMaxLen,
        }),
        up: redisUp,
        mode: config.redisFailureMode,
        bufferMax: config.usageBufferMax,
        log: app.log,
      })
    : null
  const quotas: QuotaEngine = deps.quotas ?? resilient ?? new MemoryQuotas()
  const leases = new LeaseKeeper(quotas, now, app.log)
  const pools = new Map<string, KeyPool>(
    Object.values(config.upstreams).map((u) => [
      u.name,
      // Budgets must be shared (a round trip per request); without any, each instance keeps its own
      // cooldowns and refusals and picking a key costs nothing.
      redis && u.keyBudgets.some((b) => b !== null) ? new FallbackKeyPool(u, new RedisKeyPool(u, redis), redisUp) : new MemoryKeyPool(u),
    ]),
  )
  const activity = new KeyActivity(store, app.log)
  const sources: ScrapeSources = { metrics, resilient, pools, now }
  redis?.on('error', () => metrics.redisErrors.inc())
  // Keys are looked up once and cached; every change anywhere drops them at once (pub/sub).
  const principals = new PrincipalCache()
  store.onChange((change) => principals.invalidate(change))

  const seedTeams = async () => {
    for (const seed of config.teams) await seedTeam(store, seed, now)
  }
  // Whenever Redis (re)connects, maybe to another server after a failover: say if it may evict.
  const checkEviction = () =>
    void evictionPolicy(redis!).then(
      (found) => {
        if (found === null) logger.debug('redis evicts no keys (no maxmemory, or maxmemory-policy noeviction)')
        else {
          logger.warn(
            { maxmemory_policy: found.policy, maxmemory: found.maxmemory },
            'redis may evict keys when full: an evicted quota key forgets what its limit counted; set maxmemory-policy noeviction',
          )
        }
      },
      (err: unknown) => logger.debug({ err: (err as Error).message }, 'could not read redis eviction policy'),
    )
  // Redis back after an outage: write the usage that waited.
  redis?.on('ready', () => {
    void resilient?.flush()
    checkEviction()
  })
  if (redisStore?.up) checkEviction()
  if (redisStore && !(await redisStore.ready(5_000))) {
    // Start anyway (fail-open serves, fail-closed answers 503) and seed once Redis is there.
    logger.warn({ failure_mode: config.redisFailureMode }, 'redis is not reachable yet; starting anyway and retrying')
    redis!.once(
      'ready',
      () => void seedTeams().catch((err: unknown) => logger.error({ err }, 'could not create the teams of the config file')),
    )
  } else {
    await seedTeams()
  }

  // Failed authentications per client IP, shared through Redis when there is one: the
  // "count only failures, check before" pattern @fastify/rate-limit supports with increment: false.
  await app.register(rateLimit, { global: false, skipOnError: true, ...(redis ? { redis, nameSpace: 'tg:authfail:' } : {}) })
  const authFailures = app.createRateLimit({ max: config.quotas.authFailuresPerMinute, timeWindow: 60_000 })
  // Wrong admin tokens are counted apart, so a client's wrong keys never lock out the operator.
  const adminFailures = app.createRateLimit({
    max: config.quotas.authFailuresPerMinute,
    timeWindow: 60_000,
    keyGenerator: (request) => `admin:${request.ip}`,
  })

  await app.register(healthRoutes, {
    store,
    redis: redisStore
      ? {
          up: redisUp,
          mode: config.redisFailureMode,
          buffers: () => {
            // (A Redis store always comes with its ResilientQuotas.)
            const { usage, audit } = resilient!.backlogs()
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
        activity,
        cache: principals,
        serveStale: config.redisFailureMode === 'open',
        onLimited: () => metrics.rejections.inc({ kind: 'auth_failures' }),
        storeAway: config.redisFailureMode === 'closed' && redisStore ? () => !redisUp() : undefined,
      }),
    )
    await v1.register(proxyRoutes, {
      metrics,
      router,
      upstreams,
      pools,
      quotas,
      leases,
      now,
      completionReservation: config.quotas.completionReservation,
      guards: config.guards,
    })
    await v1.register(modelRoutes, { config, upstreams, now })
    await v1.register(usageRoutes, { store, quotas, now })
  })
  if (config.metricsPort === null) {
    app.get('/metrics', async (_request, reply) => {
      const text = await scrape(sources)
      return reply.header('content-type', metrics.registry.contentType).send(text)
    })
  }
  if (config.adminToken === null) logger.warn('no ADMIN_TOKEN: the admin API (/admin) is off and its routes answer 404')
  if (config.adminToken !== null) {
    await app.register(adminRoutes, {
      store,
      quotas,
      adminToken: config.adminToken,
      now,
      rotationGraceSeconds: config.keys.rotationGraceSeconds,
      failures: adminFailures,
      onLimited: () => metrics.rejections.inc({ kind: 'auth_failures' }),
    })
  }

  app.decorate('scrape', () => scrape(sources))
  app.decorate('firstRunKey', deps.firstRun ? await firstRunKey(store, now()) : null)
  app.addHook('onClose', async () => {
    leases.close()
    await activity.close()
    resilient?.close()
    await resilient?.flush()
    // (A failed write of the last batch puts its entries in the buffer: counted as lost below.)
    await resilient?.writeAudit()
    await resilient?.shutdown()
    for (const [name, { waiting }] of Object.entries(resilient?.backlogs() ?? {})) {
      if (waiting > 0) app.log.error({ waiting }, `${name} records still waiting for redis at shutdown are lost`)
    }
    await Promise.all([...upstreams.values()].map((u) => u.close()))
    if (ownStore) await store.close()
  })

  return app
}
