import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'

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

  const app = await buildApp(config)
  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (err) {
    app.log.fatal({ err }, 'could not listen')
    process.exit(1)
  }
  app.log.info(
    {
      store: config.redisUrl ? 'redis' : 'memory',
      upstreams: Object.values(config.upstreams).map((u) => ({ name: u.name, base_url: u.baseUrl, keys: u.apiKeys.length })),
      config_file: config.configFile,
      admin_api: config.adminToken !== null,
    },
    'tollgate ready',
  )

  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'shutting down')
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
