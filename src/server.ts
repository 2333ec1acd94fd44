import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'
import { firstRunNote, isFirstRun, withFirstRunToken } from './first-run.js'
import { VERSION } from './metrics.js'

/** The entry point, and the only module that reads process.env. */
async function main(): Promise<void> {
  let config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tollgate: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }

  const firstRun = isFirstRun(config)
  if (firstRun) config = withFirstRunToken(config)
  const app = await buildApp(config, { firstRun })
  try {
    // A deeper accept queue than Node's 511, for bursts of new connections (the kernel caps it).
    await app.listen({ port: config.port, host: config.host, backlog: 4096 })
  } catch (err) {
    app.log.fatal({ err }, 'could not listen')
    process.exit(1)
  }
  if (app.firstRunKey !== null) process.stderr.write(firstRunNote(config, (app.server.address() as AddressInfo).port, app.firstRunKey))
  let metricsServer: Server | null = null
  if (config.metricsPort !== null) {
    metricsServer = createServer((req, res) => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
        return
      }
      app.scrape().then(
        (text) => res.writeHead(200, { 'content-type': app.metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      )
    })
    metricsServer.listen(config.metricsPort, config.host)
  }
  app.log.info(
    {
      version: VERSION,
      metrics: config.metricsPort === null ? 'main port /metrics' : `port ${config.metricsPort} /metrics`,
      store: config.redisUrl ? 'redis' : 'memory',
      upstreams: Object.values(config.upstreams).map((u) => ({ name: u.name, base_url: u.baseUrl, keys: u.apiKeys.length })),
      config_file: config.configFile,
      admin_api: config.adminToken !== null,
    },
    'tollgate ready',
  )

  // Graceful shutdown: stop accepting, let requests and streams in flight finish (up to the drain
  // timeout, then cut what is left, which still settles its usage), flush buffers, close Redis.
  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    app.log.info({ signal, drain_timeout_ms: config.drainTimeoutMs }, 'shutting down: draining requests in flight')
    // Connections turn idle as their last response ends; close each as soon as it does.
    const idle = setInterval(() => app.server.closeIdleConnections(), 100)
    idle.unref()
    const cut = setTimeout(() => {
      app.log.warn('drain timeout reached: closing the connections still open')
      app.server.closeAllConnections()
    }, config.drainTimeoutMs)
    cut.unref()
    metricsServer?.close()
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'error while shutting down')
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
}

await main()
