import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { allows } from '../access.js'
import type { Config } from '../config.js'
import { modelNotFound } from '../errors.js'
import type { UpstreamClient } from '../upstream/client.js'

/**
 * GET /v1/models and /v1/models/{id}: the models this gateway serves, in OpenAI's list shape.
 * Configured models and aliases always; when unknown names route to a default upstream, its own
 * list too, fetched with a short timeout, cached briefly and shared by concurrent callers, so the
 * call that LangChain's ChatNVIDIA makes when it is built answers fast. If the upstream list cannot
 * be had, the configured list still answers.
 */

export interface ModelEntry {
  id: string
  object: 'model'
  created: number
  owned_by: string
  /** LangChain's ChatNVIDIA reads it: for an alias, the model it stands for. */
  root?: string
  [extra: string]: unknown
}

export interface ModelsOptions {
  config: Config
  upstreams: Map<string, UpstreamClient>
  now: () => number
}

const UPSTREAM_LIST_TIMEOUT_MS = 5_000
/** After a failed fetch, wait this long before asking the upstream again. */
const FAILURE_BACKOFF_MS = 10_000

export class ModelCatalog {
  private cached: { entries: ModelEntry[]; until: number } | null = null
  private inflight: Promise<ModelEntry[]> | null = null
  private readonly created: number

  constructor(private readonly opts: ModelsOptions) {
    this.created = Math.floor(opts.now() / 1000)
  }

  private configured(): ModelEntry[] {
    const { config } = this.opts
    const entries: ModelEntry[] = Object.values(config.models).map((m) => ({
      id: m.name,
      object: 'model',
      created: this.created,
      owned_by: m.upstream,
    }))
    for (const [alias, target] of Object.entries(config.aliases)) {
      const owner = config.models[target]?.upstream ?? config.defaultUpstream ?? 'tollgate'
      entries.push({ id: alias, object: 'model', created: this.created, owned_by: owner, root: target })
    }
    return entries
  }

  private async fetchUpstream(client: UpstreamClient): Promise<ModelEntry[]> {
    const res = await client.request(
      {
        path: '/models',
        method: 'GET',
        stream: false,
        requestId: 'models-list',
        headersTimeoutMs: UPSTREAM_LIST_TIMEOUT_MS,
      },
      client.config.apiKeys[0],
    )
    const text = await res.body.text()
    if (res.statusCode !== 200) throw new Error(`upstream answered ${res.statusCode}`)
    const data = JSON.parse(text) as { data?: unknown }
    if (!Array.isArray(data.data)) throw new Error('upstream list has no data array')
    return data.data.filter((m): m is ModelEntry => typeof m === 'object' && m !== null && typeof (m as ModelEntry).id === 'string')
  }

  async list(log: { warn: (obj: object, msg: string) => void }): Promise<ModelEntry[]> {
    const { config, upstreams, now } = this.opts
    const client = config.defaultUpstream === null ? undefined : upstreams.get(config.defaultUpstream)
    if (!client) return this.configured()
    if (this.cached && this.cached.until > now()) return this.cached.entries
    this.inflight ??= this.fetchUpstream(client)
      .then((upstreamEntries) => {
        const merged = this.merge(upstreamEntries)
        this.cached = { entries: merged, until: now() + config.modelsCacheMs }
        return merged
      })
      .catch((err: unknown) => {
        log.warn({ upstream: client.name, err: (err as Error).message }, 'could not list upstream models; serving configured ones')
        const entries = this.configured()
        this.cached = { entries, until: now() + Math.min(FAILURE_BACKOFF_MS, config.modelsCacheMs) }
        return entries
      })
      .finally(() => {
        this.inflight = null
      })
    return this.inflight
  }

  /** Configured entries first; an upstream entry of the same id keeps its own fields. */
  private merge(upstreamEntries: ModelEntry[]): ModelEntry[] {
    const byId = new Map<string, ModelEntry>()
    for (const entry of this.configured()) byId.set(entry.id, entry)
    for (const entry of upstreamEntries) {
      const mine = byId.get(entry.id)
      byId.set(entry.id, mine ? { ...entry, ...mine, created: entry.created ?? mine.created } : entry)
    }
    return [...byId.values()]
  }
}

/** The models a caller may use (allowed_models): an entry by its id, or an alias by the model it stands for. */
function usable(request: FastifyRequest, entries: ModelEntry[]): ModelEntry[] {
  const { team, key } = request.principal!
  const lists = { team: team.allowed_models, key: key.allowed_models }
  if (lists.team === null && lists.key === null) return entries
  return entries.filter((m) => allows(lists, m.root === undefined ? [m.id] : [m.id, m.root]))
}

export const modelRoutes: FastifyPluginAsync<ModelsOptions> = async (app, opts) => {
  const catalog = new ModelCatalog(opts)

  app.get('/v1/models', async (request) => ({ object: 'list', data: usable(request, await catalog.list(request.log)) }))

  app.get('/v1/models/*', async (request) => {
    const id = (request.params as { '*': string })['*']
    const entry = usable(request, await catalog.list(request.log)).find((m) => m.id === id)
    if (!entry) throw modelNotFound(id)
    return entry
  })
}
