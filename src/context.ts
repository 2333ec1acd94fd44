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
  }
}

export function newRequestContext(): RequestContext {
  return { team: null, keyId: null, model: null, endpoint: null, stream: false, upstreamStatus: null }
}
