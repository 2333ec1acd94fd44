import type { FastifyPluginAsync } from 'fastify'
import type { Store } from '../store/types.js'

const READY_TIMEOUT_MS = 2_000

export interface HealthOptions {
  store: Store
  /** With Redis: its state, the failure mode, and the usage and audit entries waiting for it. */
  redis: {
    up: () => boolean
    mode: 'open' | 'closed'
    buffers: () => Record<'usage_buffer' | 'audit_buffer', { waiting: number; dropped: number }>
  } | null
}

/**
 * /healthz: the process is up. /readyz: config loaded and the store answers; with Redis away it is
 * 503 in fail-closed mode and 200 `degraded` in fail-open mode (the gateway still serves).
 */
export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { store, redis }) => {
  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (request, reply) => {
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        store.ping(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS)
        }),
      ])
      return { status: 'ready', store: store.kind, ...(redis ? { redis: 'up', failure_mode: redis.mode, ...redis.buffers() } : {}) }
    } catch (err) {
      request.log.warn({ err: (err as Error).message }, 'store not reachable')
      if (redis?.mode === 'open') {
        return { status: 'degraded', store: store.kind, redis: 'down', failure_mode: 'open', ...redis.buffers() }
      }
      return reply.code(503).send({
        status: 'unavailable',
        store: store.kind,
        error: 'store unreachable',
        ...(redis ? { redis: 'down', failure_mode: redis.mode } : {}),
      })
    } finally {
      clearTimeout(timer)
    }
  })
}
