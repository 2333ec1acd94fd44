import type { Config, ModelConfig, UpstreamConfig } from '../config.js'
import type { Price } from '../spend.js'

export interface ResolvedModel {
  /** What the client asked for (maybe an alias). */
  requested: string
  model: ModelConfig
  upstream: UpstreamConfig
}

/** Models not configured that get a metrics label of their own, at most; the rest share 'other'. */
export const MAX_MODEL_LABELS = 100

/**
 * Resolves the model a client names (or an alias of it) to an upstream and its defaults, under
 * one canonical name: model names are matched without regard to case (`MinimaxAI/MiniMax-M2.1`
 * is the configured `minimaxai/minimax-m2.1`, with its limits and defaults), and a name nothing
 * configures is known by its lower-case spelling (and sent upstream as the client wrote it).
 */
export class ModelRouter {
  /** Each configured model's fallback chain, resolved once at start-up. */
  private readonly chains = new Map<string, ResolvedModel[]>()
  /** Configured models and aliases by lower-case name. */
  private readonly models = new Map<string, ModelConfig>()
  private readonly aliases = new Map<string, string>()
  /** Unconfigured models that answered, each with its own label (up to MAX_MODEL_LABELS). */
  private readonly labelled = new Set<string>()

  constructor(private readonly config: Config) {
    for (const model of Object.values(config.models)) this.models.set(model.name.toLowerCase(), model)
    for (const [alias, target] of Object.entries(config.aliases)) this.aliases.set(alias.toLowerCase(), target)
    for (const model of Object.values(config.models)) {
      const fallbacks = model.fallbacks.map((name) => this.resolve(name)).filter((r): r is ResolvedModel => r !== null)
      this.chains.set(model.name, fallbacks)
    }
  }

  /** The model and then its fallbacks, in the order to try them. */
  candidates(resolved: ResolvedModel): ResolvedModel[] {
    return [resolved, ...(this.chains.get(resolved.model.name) ?? [])]
  }

  /** What a (canonical) model's tokens cost; null for a model without a price. */
  price(name: string): Price | null {
    return this.models.get(name.toLowerCase())?.price ?? null
  }

  /** A configured model or alias (as opposed to any name routed to the default upstream). */
  isConfigured(name: string): boolean {
    const lower = name.toLowerCase()
    return this.models.has(lower) || this.aliases.has(lower)
  }

  /**
   * The metrics label of a (canonical) model name: configured models always have their own; others
   * only once they have answered, and only the first MAX_MODEL_LABELS of them, so no client can
   * grow the label set by naming models.
   */
  label(name: string, answered: boolean): string {
    if (this.isConfigured(name) || this.labelled.has(name)) return name
    if (answered && this.labelled.size < MAX_MODEL_LABELS) {
      this.labelled.add(name)
      return name
    }
    return 'other'
  }

  resolve(requested: string): ResolvedModel | null {
    const lower = requested.toLowerCase()
    const target = this.aliases.get(lower)
    const configured = this.models.get(target?.toLowerCase() ?? lower)
    if (configured) {
      const upstream = this.config.upstreams[configured.upstream]
      return upstream ? { requested, model: configured, upstream } : null
    }
    const fallback = this.config.defaultUpstream
    const upstream = fallback === null ? undefined : this.config.upstreams[fallback]
    if (!upstream) return null
    // An alias of a model nothing configures sends its target; any other name goes as written.
    const upstreamModel = target ?? requested
    return {
      requested,
      model: { name: upstreamModel.toLowerCase(), upstream: upstream.name, upstreamModel, defaults: {}, fallbacks: [], price: null },
      upstream,
    }
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
    texts = Object.fromEntries(
      Object.entries(model.defaults).map(([field, value]) => [field, `${JSON.stringify(field)}:${JSON.stringify(value)},`]),
    )
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
export function forwardBody(
  raw: string | null,
  body: Record<string, unknown>,
  resolved: ResolvedModel,
  useDefaults: boolean,
  askUsage: boolean,
): string {
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
