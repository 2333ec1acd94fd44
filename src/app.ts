import type { FastifyInstance } from 'fastify'
import type { DestinationStream, Logger } from 'pino'
import { openData, type DataDeps } from './compose/data.js'
import { createHttp } from './compose/http.js'
import { registerRoutes } from './compose/routes.js'
import { scrape } from './compose/scrape.js'
import { openUpstreams } from './compose/upstreams.js'
import type { Config } from './config.js'
import './context.js'
import { firstRunKey } from './first-run.js'
import { createLogger } from './logger.js'
import { Metrics } from './metrics.js'
import { countRequest } from './proxy/route.js'

export interface AppDeps extends DataDeps {
  /** Where log lines go (default: stdout). */
  logStream?: DestinationStream
  logger?: Logger
  /** The clock, in ms since the epoch. */
  now?: () => number
  /** A first run (first-run.ts): make team `default` and a key of it, kept in `app.firstRunKey`. */
  firstRun?: boolean
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

/**
 * Builds the gateway from a complete config (nothing here reads the environment), from its parts
 * in src/compose: the HTTP server, the data (store, quotas, audit), the upstreams, the routes.
 */
export async function buildApp(config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const logger = deps.logger ?? createLogger(config.logLevel, deps.logStream)
  const now = deps.now ?? Date.now
  const metrics = new Metrics({ defaultMetrics: true })
  // Requests to the proxied endpoints are counted as they close, like their log lines.
  const app = createHttp(config, logger, (request, status) => countRequest(metrics, upstreams.router, request, status))
  const data = await openData(config, deps, app.log, now, metrics)
  data.redis?.on('error', () => metrics.redisErrors.inc())
  const upstreams = openUpstreams(config, data, app.log)
  const scrapeNow = () => scrape(metrics, data, upstreams, now)
  await registerRoutes(app, { config, data, upstreams, metrics, now, scrape: scrapeNow })

  app.decorate('metrics', metrics)
  app.decorate('scrape', scrapeNow)
  app.decorate('firstRunKey', deps.firstRun ? await firstRunKey(data.store, now()) : null)
  app.addHook('onClose', async () => {
    await data.close()
    await upstreams.close()
  })
  return app
}
