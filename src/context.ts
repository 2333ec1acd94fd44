import type { Principal } from './store/types.js'

/** What the gateway learns about a request as it goes, for the log line and later the usage record. */
export interface RequestContext {
  team: string | null
  keyId: string | null
  model: string | null
  endpoint: string | null
  stream: boolean
  upstreamStatus: number | null
}

declare module 'fastify' {
  interface FastifyRequest {
    tg: RequestContext
    /** The authenticated key and its team (set by client authentication on /v1 routes). */
    principal: Principal | null
  }
}

export function newRequestContext(): RequestContext {
  return { team: null, keyId: null, model: null, endpoint: null, stream: false, upstreamStatus: null }
}
