import type { Config, ModelConfig, UpstreamConfig } from '../config.js'

export interface ResolvedModel {
  /** What the client asked for (maybe an alias). */
  requested: string
  model: ModelConfig
  upstream: UpstreamConfig
}

/** Resolves the model a client names (or an alias of it) to an upstream and its defaults. */
export class ModelRouter {
  /** Each configured model's fallback chain, resolved once at start-up. */
  private readonly chains = new Map<string, ResolvedModel[]>()

  constructor(private readonly config: Config) {
    for (const model of Object.values(config.models)) {
      const fallbacks = model.fallbacks.map((name) => this.resolve(name)).filter((r): r is ResolvedModel => r !== null)
      this.chains.set(model.name, fallbacks)
    }
  }

  /** The model and then its fallbacks, in the order to try them. */
  candidates(resolved: ResolvedModel): ResolvedModel[] {
    return [resolved, ...(this.chains.get(resolved.model.name) ?? [])]
  }

  /** A configured model or alias (as opposed to any name routed to the default upstream). */
  isConfigured(name: string): boolean {
    return this.config.models[name] !== undefined || this.config.aliases[name] !== undefined
  }

  resolve(requested: string): ResolvedModel | null {
    const name = this.config.aliases[requested] ?? requested
    const configured = this.config.models[name]
    if (configured) {
      const upstream = this.config.upstreams[configured.upstream]
      return upstream ? { requested, model: configured, upstream } : null
    }
    const fallback = this.config.defaultUpstream
    const upstream = fallback === null ? undefined : this.config.upstreams[fallback]
    if (!upstream) return null
    return { requested, model: { name, upstream: upstream.name, upstreamModel: name, defaults: {}, fallbacks: [] }, upstream }
  }
}

/** Fields that mean the same limit: a default for one never goes in beside the client's other. */
const EQUIVALENT_FIELDS: Record<string, string> = {
  max_tokens: 'max_completion_tokens',
  max_completion_tokens: 'max_tokens',
}

/**
 * The model defaults a body gets: only for fields the client left out. A field the client sent,
 * even as null, is the client's choice and is kept.
 */
function missingDefaults(body: Record<string, unknown>, resolved: ResolvedModel, useDefaults: boolean): [string, unknown][] {
  if (!useDefaults) return []
  const missing: [string, unknown][] = []
  for (const [field, value] of Object.entries(resolved.model.defaults)) {
    if (field in body) continue
    const twin = EQUIVALENT_FIELDS[field]
    if (twin !== undefined && twin in body) continue
    missing.push([field, value])
  }
  return missing
}

/** The body sent upstream, as an object: the client's own fields always win over the defaults. */
export function applyDefaults(body: Record<string, unknown>, resolved: ResolvedModel, useDefaults: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = Object.fromEntries(missingDefaults(body, resolved, useDefaults))
  Object.assign(out, body)
  out.model = resolved.model.upstreamModel
  return out
}

/** Each default of a model as JSON member text (`"top_p":0.95,`), written once per model. */
const memberTexts = new WeakMap<ModelConfig, Record<string, string>>()
function memberText(model: ModelConfig): Record<string, string> {
  let texts = memberTexts.get(model)
  if (!texts) {
    texts = Object.fromEntries(Object.entries(model.defaults).map(([field, value]) => [field, `${JSON.stringify(field)}:${JSON.stringify(value)},`]))
    memberTexts.set(model, texts)
  }
  return texts
}

/**
 * The text sent upstream. The client's own bytes are kept (a number written 1.0, or a seed of 20
 * digits, arrives exactly as written) and the defaults, and the gateway's request for stream
 * usage, are written in front of them as members of the same object. Only when the model's name
 * changes (an alias) or the client's own stream_options must be amended is the body rebuilt from
 * the parsed object.
 */
export function forwardBody(raw: string | null, body: Record<string, unknown>, resolved: ResolvedModel, useDefaults: boolean, askUsage: boolean): string {
  if (raw === null || resolved.model.upstreamModel !== body.model || (askUsage && 'stream_options' in body)) {
    const out = applyDefaults(body, resolved, useDefaults)
    if (askUsage) out.stream_options = { ...(out.stream_options as object | undefined), include_usage: true }
    return JSON.stringify(out)
  }
  let members = ''
  const texts = memberText(resolved.model)
  for (const [field] of missingDefaults(body, resolved, useDefaults)) members += texts[field]
  if (askUsage) members += '"stream_options":{"include_usage":true},'
  if (members === '') return raw
  // The body is an object with at least a model: its members follow the first `{`.
  const open = raw.indexOf('{')
  return raw.slice(0, open + 1) + members + raw.slice(open + 1)
}
