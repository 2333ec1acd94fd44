import { toMicros } from '../spend.js'
import { intFromEnv, parseKeys, urlFromEnv, type Env } from './env.js'
import type { FileConfig } from './file.js'
import {
  BUILTIN_MODEL_DEFAULTS,
  DEFAULT_NVIDIA_BASE_URL,
  DEFAULT_NVIDIA_STATUS_URL,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUTS,
  type ModelConfig,
  type UpstreamConfig,
} from './types.js'

/** Where problems are reported from: the config file's path, or `config`. */
export interface Source {
  env: Env
  file: FileConfig
  where: string
  problems: string[]
}

/** The upstreams: the built-in `nvidia` one from the environment, unless the file defines its own; then the file's. */
export function upstreamsFrom({ env, file, where, problems }: Source): Record<string, UpstreamConfig> {
  const nvidiaBaseUrl = urlFromEnv(env, 'NVIDIA_BASE_URL', ['http:', 'https:'], problems) ?? DEFAULT_NVIDIA_BASE_URL
  const statusUrl = trimSlash(urlFromEnv(env, 'NVIDIA_STATUS_URL', ['http:', 'https:'], problems) ?? DEFAULT_NVIDIA_STATUS_URL)
  const nvidiaKeys = parseKeys(env.NVIDIA_API_KEY)
  const nvidiaBudget = env.NVIDIA_KEY_REQUESTS_PER_MINUTE?.trim()
    ? intFromEnv(env, 'NVIDIA_KEY_REQUESTS_PER_MINUTE', 0, 1, 1_000_000, problems)
    : null
  const nvidiaRetries = intFromEnv(env, 'NVIDIA_RETRIES', DEFAULT_RETRY.retries, 0, 10, problems)
  const upstreams: Record<string, UpstreamConfig> = {
    nvidia: {
      name: 'nvidia',
      baseUrl: trimSlash(nvidiaBaseUrl),
      apiKeys: nvidiaKeys,
      keyEnv: 'NVIDIA_API_KEY',
      keyBudgets: nvidiaKeys.map(() => nvidiaBudget),
      timeouts: { ...DEFAULT_TIMEOUTS },
      ...DEFAULT_RETRY,
      retries: nvidiaRetries,
      statusUrl,
    },
  }
  for (const [name, u] of Object.entries(file.upstreams ?? {})) {
    const keyEnv = u.api_key_env ?? (name === 'nvidia' ? 'NVIDIA_API_KEY' : undefined)
    if (u.api_key_env && parseKeys(env[u.api_key_env]).length === 0) {
      problems.push(`${where}: upstreams.${name}.api_key_env: environment variable ${u.api_key_env} is not set`)
    }
    const apiKeys = keyEnv ? parseKeys(env[keyEnv]) : []
    const budgets = u.key_requests_per_minute ?? (name === 'nvidia' ? (nvidiaBudget ?? undefined) : undefined)
    if (Array.isArray(budgets) && budgets.length !== apiKeys.length) {
      problems.push(`${where}: upstreams.${name}.key_requests_per_minute: ${budgets.length} budgets for ${apiKeys.length} keys`)
    }
    upstreams[name] = {
      name,
      baseUrl: trimSlash(u.base_url),
      apiKeys,
      keyEnv: keyEnv ?? null,
      keyBudgets: apiKeys.map((_, i) => (Array.isArray(budgets) ? (budgets[i] ?? null) : (budgets ?? null))),
      retries: u.retries ?? (name === 'nvidia' ? nvidiaRetries : DEFAULT_RETRY.retries),
      retryBaseMs: u.retry_base_ms ?? DEFAULT_RETRY.retryBaseMs,
      keyWaitMs: u.key_wait_ms ?? DEFAULT_RETRY.keyWaitMs,
      statusUrl: u.status_url === undefined ? statusUrl : trimSlash(u.status_url),
      timeouts: {
        connectMs: u.timeouts?.connect_ms ?? DEFAULT_TIMEOUTS.connectMs,
        headersMs: u.timeouts?.headers_ms ?? DEFAULT_TIMEOUTS.headersMs,
        idleMs: u.timeouts?.idle_ms ?? DEFAULT_TIMEOUTS.idleMs,
      },
    }
  }
  return upstreams
}

/** The upstream of models the file does not name: `nvidia` unless the file says otherwise (null: none). */
export function defaultUpstreamFrom({ file, where, problems }: Source, upstreams: Record<string, UpstreamConfig>): string | null {
  const defaultUpstream = file.default_upstream === undefined ? 'nvidia' : file.default_upstream
  if (defaultUpstream !== null && !upstreams[defaultUpstream]) {
    problems.push(`${where}: default_upstream: no upstream named ${JSON.stringify(defaultUpstream)}`)
  }
  return defaultUpstream
}

/** The models: built-in defaults first; the file's entries replace them name by name. */
export function modelsFrom(
  { file, where, problems }: Source,
  upstreams: Record<string, UpstreamConfig>,
  defaultUpstream: string | null,
): Record<string, ModelConfig> {
  const models: Record<string, ModelConfig> = {}
  if (defaultUpstream !== null && upstreams[defaultUpstream]) {
    for (const [name, defaults] of Object.entries(BUILTIN_MODEL_DEFAULTS)) {
      models[name] = { name, upstream: defaultUpstream, upstreamModel: name, defaults: { ...defaults }, fallbacks: [], price: null }
    }
  }
  for (const [name, m] of Object.entries(file.models ?? {})) {
    const upstream = m.upstream ?? defaultUpstream
    if (upstream === null) {
      problems.push(`${where}: models["${name}"].upstream: required when default_upstream is null`)
      continue
    }
    if (!upstreams[upstream]) {
      problems.push(`${where}: models["${name}"].upstream: no upstream named ${JSON.stringify(upstream)}`)
      continue
    }
    models[name] = {
      name,
      upstream,
      upstreamModel: m.upstream_model ?? name,
      defaults: { ...(m.defaults ?? {}) },
      fallbacks: m.fallbacks ?? [],
      price: m.price ? { inputMicros: toMicros(m.price.input_per_million), outputMicros: toMicros(m.price.output_per_million) } : null,
    }
  }
  for (const model of Object.values(models)) {
    for (const fallback of model.fallbacks) {
      if (fallback === model.name) problems.push(`${where}: models["${model.name}"].fallbacks: a model cannot fall back to itself`)
      else if (!models[fallback] && !(file.aliases ?? {})[fallback] && defaultUpstream === null) {
        problems.push(`${where}: models["${model.name}"].fallbacks: no model named ${JSON.stringify(fallback)}`)
      }
    }
  }
  return models
}

/** The aliases: each names a model, never another alias or a configured model's own name. */
export function aliasesFrom(
  { file, where, problems }: Source,
  models: Record<string, ModelConfig>,
  defaultUpstream: string | null,
): Record<string, string> {
  const aliases: Record<string, string> = {}
  for (const [alias, target] of Object.entries(file.aliases ?? {})) {
    if (models[alias]) {
      problems.push(`${where}: aliases["${alias}"]: the name is already a configured model`)
    } else if (!models[target] && defaultUpstream === null) {
      problems.push(`${where}: aliases["${alias}"]: no model named ${JSON.stringify(target)}`)
    } else if (file.aliases?.[target] !== undefined) {
      problems.push(`${where}: aliases["${alias}"]: points at another alias (${JSON.stringify(target)}); point it at the model`)
    } else {
      aliases[alias] = target
    }
  }
  return aliases
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '')
}
