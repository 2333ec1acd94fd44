import type { FastifyPluginAsync } from 'fastify'
import type { Store } from '../store/types.js'

const READY_TIMEOUT_MS = 2_000

/** /healthz: the process is up. /readyz: config loaded and the store answers. */
export const healthRoutes: FastifyPluginAsync<{ store: Store }> = async (app, { store }) => {
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
      return { status: 'ready', store: store.kind }
    } catch (err) {
      request.log.warn({ err: (err as Error).message }, 'store not reachable')
      return reply.code(503).send({ status: 'unavailable', store: store.kind, error: 'store unreachable' })
    } finally {
      clearTimeout(timer)
    }
  })
}
