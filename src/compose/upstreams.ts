import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config.js'
import { UpstreamClient } from '../upstream/client.js'
import { FallbackKeyPool, MemoryKeyPool, RedisKeyPool, type KeyPool } from '../upstream/key-pool.js'
import { ModelRouter } from '../upstream/router.js'
import type { Data } from './data.js'

/** The upstreams by name: each one's HTTP client, and the pool its keys are picked from. */
export interface Upstreams {
  router: ModelRouter
  clients: Map<string, UpstreamClient>
  pools: Map<string, KeyPool>
  close: () => Promise<void>
}

export function openUpstreams(config: Config, data: Data, log: FastifyBaseLogger): Upstreams {
  const clients = new Map(Object.values(config.upstreams).map((u) => [u.name, new UpstreamClient(u)]))
  for (const u of clients.values()) {
    if (!u.hasKeys && u.config.keyEnv !== null)
      log.warn(`no ${u.config.keyEnv}: requests routed to upstream '${u.name}' answer 503 until one is set`)
  }
  const { redis, redisUp } = data
  const pools = new Map<string, KeyPool>(
    Object.values(config.upstreams).map((u) => [
      u.name,
      // Budgets must be shared (a round trip per request); without any, each instance keeps its own
      // cooldowns and refusals and picking a key costs nothing.
      redis && u.keyBudgets.some((b) => b !== null) ? new FallbackKeyPool(u, new RedisKeyPool(u, redis), redisUp) : new MemoryKeyPool(u),
    ]),
  )
  return {
    router: new ModelRouter(config),
    clients,
    pools,
    close: async () => {
      await Promise.all([...clients.values()].map((u) => u.close()))
    },
  }
}
