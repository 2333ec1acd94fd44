import { Cluster, Redis } from 'ioredis'

/**
 * While Redis is away, commands fail at once instead of queueing (the gateway then serves on
 * from memory, or answers 503, as configured), and none waits long for an answer.
 */
export const REDIS_OPTIONS = {
  // Commands issued in the same tick go out in one write: a write per command was 15 % of the
  // gateway's CPU under load (profiled).
  enableAutoPipelining: true,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 2_000,
  connectTimeout: 5_000,
} as const

export type RedisClient = Redis | Cluster

interface Log {
  warn: (obj: object, msg: string) => void
  info: (obj: object, msg: string) => void
  debug: (obj: object, msg: string) => void
}

/** Where to connect: one server by URL, or a cluster by its seed nodes. */
export interface RedisTarget {
  redisUrl: string | null
  redisClusterNodes: { host: string; port: number }[] | null
}

/**
 * The gateway's connection, or null without Redis. It reports an outage once (not once per retry)
 * and its end, and, whenever it (re)connects (perhaps to another server after a failover), whether
 * that server may evict keys.
 */
export function connectRedis(target: RedisTarget, log: Log): RedisClient | null {
  let client: RedisClient
  if (target.redisClusterNodes) {
    // No auto-pipelining on a cluster: ioredis refuses pipelines that mix slots of one node.
    client = new Cluster(target.redisClusterNodes, {
      enableOfflineQueue: false,
      redisOptions: { ...REDIS_OPTIONS, enableAutoPipelining: false },
    })
  } else if (target.redisUrl) {
    client = new Redis(target.redisUrl, REDIS_OPTIONS)
  } else {
    return null
  }
  let down = false
  client.on('error', (err: Error) => {
    if (down) return
    down = true
    log.warn({ err: err.message }, 'redis connection lost; retrying')
  })
  client.on('ready', () => {
    if (down) log.info({}, 'redis connection restored')
    down = false
    void evictionPolicy(client).then(
      (found) => {
        if (found === null) log.debug({}, 'redis evicts no keys (no maxmemory, or maxmemory-policy noeviction)')
        else {
          log.warn(
            { maxmemory_policy: found.policy, maxmemory: found.maxmemory },
            'redis may evict keys when full: an evicted quota key forgets what its limit counted; set maxmemory-policy noeviction',
          )
        }
      },
      (err: unknown) => log.debug({ err: (err as Error).message }, 'could not read redis eviction policy'),
    )
  })
  return client
}

/**
 * How Redis evicts keys when it is full, if it can: a `maxmemory` set, and a policy other than
 * `noeviction`. Every quota key carries a TTL, so even the `volatile-*` policies may take them, and
 * an evicted key forgets what a limit has counted. Null when nothing can be evicted. On a cluster,
 * the first master found that can. (INFO, not CONFIG: managed Redis services often refuse CONFIG.)
 */
export async function evictionPolicy(client: RedisClient): Promise<{ policy: string; maxmemory: number } | null> {
  for (const node of client instanceof Cluster ? client.nodes('master') : [client]) {
    const info = await node.info('memory')
    const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1]
    const maxmemory = Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0)
    if (policy !== undefined && policy !== 'noeviction' && maxmemory > 0) return { policy, maxmemory }
  }
  return null
}

/** Resolves true once the client is ready for commands, or false after `timeoutMs`. */
export async function whenReady(client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return true
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady)
      resolve(false)
    }, timeoutMs)
    const onReady = () => {
      clearTimeout(timer)
      resolve(true)
    }
    client.once('ready', onReady)
  })
}
