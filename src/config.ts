import { readFileSync } from 'node:fs'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { z } from 'zod'
import { limitsSchema, type Limits } from './limits.js'
import { describeIssues } from './validation.js'

/**
 * Configuration: environment variables plus an optional YAML file (TOLLGATE_CONFIG) for
 * upstreams, models, aliases and per-model defaults. loadConfig either returns a complete Config
 * or throws one ConfigError that names every problem; the gateway never starts half-configured.
 */

export interface Timeouts {
  /** TCP + TLS connect to the upstream. */
  connectMs: number
  /** From sending the request to the upstream's response headers. */
  headersMs: number
  /** Longest silence between two chunks of the upstream's body. */
  idleMs: number
}

export interface UpstreamConfig {
  name: string
  /** Base URL including its path prefix, without a trailing slash: https://integrate.api.nvidia.com/v1 */
  baseUrl: string
  apiKeys: string[]
  /** The variable the keys come from; an upstream with one needs a key (null: keys optional). */
  keyEnv: string | null
  /** Requests per minute each key may make (null: no budget), aligned with apiKeys. */
  keyBudgets: (number | null)[]
  timeouts: Timeouts
  /** Retries before the first byte reaches the client (connection errors, 429, 500/502/503/504). */
  retries: number
  /** First backoff; it doubles per retry (with jitter), up to 8 times this. */
  retryBaseMs: number
  /** How long a request may wait for a key with room in its budget before it gets a 429. */
  keyWaitMs: number
  /**
   * Where a request the upstream queued (202 with an NVCF-REQID) is polled: `${statusUrl}/${id}`.
   * NVIDIA's API catalog queues slow requests so.
   */
  statusUrl: string
}

export interface ModelConfig {
  /** The name clients use. */
  name: string
  upstream: string
  /** The name sent upstream. */
  upstreamModel: string
  /** Request fields filled in when the client left them out (chat and completions only). */
  defaults: Record<string, unknown>
  /** Models tried in order when this one's retries are spent. */
  fallbacks: string[]
}

export interface QuotaSettings {
  /** Completion tokens reserved when a request sets no max_tokens and its model has no default. */
  completionReservation: number
  usageRetentionDays: number
  /** Approximate cap of the Redis audit stream. */
  auditMaxLen: number
  /** Failed authentications allowed per client IP and minute before that IP gets 429s. */
  authFailuresPerMinute: number
}

/** A team declared in the config file: created at start if missing, its limits set from the file. */
export interface TeamSeed {
  id: string
  name?: string
  limits: Limits
  model_limits: Record<string, Limits>
}

/**
 * What keeps one client, or one upstream, from exhausting the gateway (docs/configuration.md has
 * each default's reasons).
 */
export interface GuardSettings {
  /** The most bytes one upstream stream may carry before the gateway ends it. */
  streamMaxBytes: number
  /** The longest one upstream stream may run before the gateway ends it. */
  streamMaxMs: number
  /** The longest one SSE event may be. */
  streamMaxEventBytes: number
  /** The most bytes of a whole (non-stream) upstream answer the gateway reads. */
  answerMaxBytes: number
  /** From a connection's first byte (or its last request) to the end of a request's headers. */
  headersTimeoutMs: number
  /** From a request's first byte to the end of its body. */
  requestTimeoutMs: number
  /** Client connections open at once; more are refused at once. */
  maxConnections: number
}

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface Config {
  port: number
  host: string
  /** Serve /metrics on this port instead of the main one (null: on the main port). */
  metricsPort: number | null
  logLevel: LogLevel
  bodyLimitBytes: number
  /** On SIGTERM/SIGINT, how long requests in flight may take to finish before they are cut. */
  drainTimeoutMs: number
  redisUrl: string | null
  /** What to do while Redis is away: serve on from memory ('open') or answer 503 ('closed'). */
  redisFailureMode: 'open' | 'closed'
  /** Settlements kept in memory while Redis is away, at most. */
  usageBufferMax: number
  /** Redis Cluster seed nodes (REDIS_CLUSTER_NODES); when set, used instead of REDIS_URL. */
  redisClusterNodes: { host: string; port: number }[] | null
  /** Fastify's trustProxy: whether (or which) proxies' X-Forwarded-For to believe for client IPs. */
  trustProxy: boolean | number | string
  adminToken: string | null
  upstreams: Record<string, UpstreamConfig>
  models: Record<string, ModelConfig>
  aliases: Record<string, string>
  /** Where a model that is neither configured nor an alias goes; null answers 404 instead. */
  defaultUpstream: string | null
  modelsCacheMs: number
  quotas: QuotaSettings
  guards: GuardSettings
  keys: { rotationGraceSeconds: number }
  teams: TeamSeed[]
  /** The file the config came from, for the start-up log. */
  configFile: string | null
}

export class ConfigError extends Error {
  readonly problems: string[]
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export const DEFAULT_NVIDIA_BASE_URL = 'https://integrate.api.nvidia.com/v1'
export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 10_000, headersMs: 300_000, idleMs: 120_000 }
export const DEFAULT_RETRY = { retries: 2, retryBaseMs: 250, keyWaitMs: 10_000 }
export const DEFAULT_NVIDIA_STATUS_URL = 'https://api.nvcf.nvidia.com/v2/nvcf/pexec/status'

/**
 * Built-in model defaults, from each model card's recommended parameters. Only fields the NVIDIA
 * API accepts for the model: its schema is strict and answers 422 to anything else.
 */
export const BUILTIN_MODEL_DEFAULTS: Record<string, Record<string, unknown>> = {
  'minimaxai/minimax-m2.1': { temperature: 1, top_p: 0.95, max_tokens: 8192 },
}

/** Fields a default must never set: they are the request itself, not a parameter of it. */
const RESERVED_DEFAULT_FIELDS = ['model', 'messages', 'prompt', 'input', 'stream', 'stream_options']

const timeoutMs = z.int().min(1).max(3_600_000)

const reserved = z.undefined({ error: 'cannot be a default: it is part of the request itself' }).optional()

const defaultsSchema = z.looseObject({
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().gt(0).max(1).optional(),
  max_tokens: z.int().min(1).optional(),
  max_completion_tokens: z.int().min(1).optional(),
  frequency_penalty: z.number().min(-2).max(2).optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  seed: z.int().optional(),
  stop: z.union([z.string(), z.array(z.string())]).optional(),
  ...Object.fromEntries(RESERVED_DEFAULT_FIELDS.map((field) => [field, reserved])),
})

const envVarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'must be an environment variable name' })

const fileSchema = z.strictObject({
  upstreams: z
    .record(
      z.string().regex(/^[A-Za-z0-9_.-]+$/, { error: 'upstream names use letters, digits, _ . -' }),
      z.strictObject({
        base_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
        api_key_env: envVarName.optional(),
        status_url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
        timeouts: z
          .strictObject({ connect_ms: timeoutMs.optional(), headers_ms: timeoutMs.optional(), idle_ms: timeoutMs.optional() })
          .optional(),
        key_requests_per_minute: z.union([z.int().min(1), z.array(z.int().min(1).nullable())]).optional(),
        retries: z.int().min(0).max(10).optional(),
        retry_base_ms: z.int().min(0).max(60_000).optional(),
        key_wait_ms: z.int().min(0).max(600_000).optional(),
      }),
    )
    .optional(),
  default_upstream: z.string().nullable().optional(),
  models: z
    .record(
      z.string().min(1),
      z.strictObject({
        upstream: z.string().optional(),
        upstream_model: z.string().min(1).optional(),
        defaults: defaultsSchema.optional(),
        fallbacks: z.array(z.string().min(1)).max(10).optional(),
      }),
    )
    .optional(),
  aliases: z.record(z.string().min(1), z.string().min(1)).optional(),
  models_cache_seconds: z.int().min(0).max(86_400).optional(),
  quotas: z
    .strictObject({
      default_completion_tokens: z.int().min(1).max(10_000_000).optional(),
      usage_retention_days: z.int().min(1).max(3_650).optional(),
      audit_max_len: z.int().min(0).max(100_000_000).optional(),
      auth_failures_per_minute: z.int().min(1).max(1_000_000).optional(),
    })
    .optional(),
  keys: z
    .strictObject({
      rotation_grace_seconds: z
        .int()
        .min(0)
        .max(30 * 86_400)
        .optional(),
    })
    .optional(),
  teams: z
    .record(
      z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, { error: 'team ids are 1 to 64 letters, digits, ".", "_" or "-"' }),
      z.strictObject({
        name: z.string().min(1).max(200).optional(),
        limits: limitsSchema.optional(),
        model_limits: z.record(z.string().min(1), limitsSchema).optional(),
      }),
    )
    .optional(),
})

type FileConfig = z.infer<typeof fileSchema>

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export type Env = Record<string, string | undefined>
export type ReadFile = (path: string) => string

function parseKeys(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0)
}

function intFromEnv(env: Env, name: string, fallback: number, min: number, max: number, problems: string[]): number {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return fallback
  if (!/^\d+$/.test(raw.trim())) {
    problems.push(`${name}: must be a whole number, got ${JSON.stringify(raw)}`)
    return fallback
  }
  const value = Number(raw)
  if (value < min || value > max) problems.push(`${name}: must be between ${min} and ${max}, got ${value}`)
  return value
}

function urlFromEnv(env: Env, name: string, protocols: string[], problems: string[]): string | null {
  const raw = env[name]?.trim()
  if (!raw) return null
  try {
    const url = new URL(raw)
    if (!protocols.includes(url.protocol)) {
      problems.push(`${name}: must use ${protocols.join(' or ')}, got ${JSON.stringify(url.protocol)}`)
    }
  } catch {
    problems.push(`${name}: not a valid URL`)
  }
  return raw
}

/** `host:port,host:port`: the seed nodes of a Redis Cluster. */
function parseClusterNodes(raw: string | undefined, problems: string[]): { host: string; port: number }[] | null {
  if (!raw?.trim()) return null
  const nodes: { host: string; port: number }[] = []
  for (const part of raw
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const match = /^(.+):(\d{1,5})$/.exec(part)
    const port = match ? Number(match[2]) : NaN
    if (!match || port < 1 || port > 65_535) problems.push(`REDIS_CLUSTER_NODES: ${JSON.stringify(part)} is not host:port`)
    else nodes.push({ host: match[1]!, port })
  }
  return nodes.length > 0 ? nodes : null
}

/**
 * Which X-Forwarded-For entries to believe. `true` means one proxy in front (Fastify's own `true`
 * believes every entry, so any client could name its own address, and escape the failed-auth
 * limit with a new one on every try): a hop count or the proxies' addresses say more.
 */
function parseTrustProxy(raw: string | undefined): boolean | number | string {
  const value = raw?.trim()
  if (!value || value === 'false') return false
  if (value === 'true') return 1
  if (/^\d+$/.test(value)) return Number(value)
  return value
}

function readConfigFile(path: string, readFile: ReadFile, problems: string[]): FileConfig {
  let text: string
  try {
    text = readFile(path)
  } catch (err) {
    problems.push(`TOLLGATE_CONFIG: cannot read ${path}: ${(err as Error).message}`)
    return {}
  }
  let data: unknown
  try {
    data = parseYaml(text)
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` (line ${err.linePos[0].line})` : ''
    problems.push(`${path}${where}: not valid YAML: ${(err as Error).message.split('\n')[0]}`)
    return {}
  }
  if (data === null || data === undefined) return {}
  const parsed = fileSchema.safeParse(data)
  if (!parsed.success) {
    problems.push(...describeIssues(parsed.error.issues).map((line) => `${path}: ${line}`))
    return {}
  }
  return parsed.data
}

export function loadConfig(env: Env, readFile: ReadFile = (p) => readFileSync(p, 'utf8')): Config {
  const problems: string[] = []

  const port = intFromEnv(env, 'PORT', 8080, 0, 65_535, problems)
  const bodyLimitBytes = intFromEnv(env, 'BODY_LIMIT_BYTES', 10 * 1024 * 1024, 1024, 1024 * 1024 * 1024, problems)
  const metricsPort = env.METRICS_PORT?.trim() ? intFromEnv(env, 'METRICS_PORT', 0, 1, 65_535, problems) : null
  const drainTimeoutMs = intFromEnv(env, 'DRAIN_TIMEOUT_MS', 30_000, 0, 3_600_000, problems)
  const host = env.HOST?.trim() || '0.0.0.0'
  const MiB = 1024 * 1024
  const guards: GuardSettings = {
    streamMaxBytes: intFromEnv(env, 'STREAM_MAX_BYTES', 256 * MiB, 1024, 64 * 1024 * MiB, problems),
    streamMaxMs: intFromEnv(env, 'STREAM_MAX_SECONDS', 7_200, 1, 7 * 86_400, problems) * 1000,
    streamMaxEventBytes: intFromEnv(env, 'STREAM_MAX_EVENT_BYTES', 8 * MiB, 1024, 1024 * MiB, problems),
    answerMaxBytes: intFromEnv(env, 'ANSWER_MAX_BYTES', 64 * MiB, 1024, 16 * 1024 * MiB, problems),
    headersTimeoutMs: intFromEnv(env, 'HEADERS_TIMEOUT_MS', 10_000, 100, 3_600_000, problems),
    requestTimeoutMs: intFromEnv(env, 'REQUEST_TIMEOUT_MS', 30_000, 100, 3_600_000, problems),
    maxConnections: intFromEnv(env, 'MAX_CONNECTIONS', 16_384, 1, 10_000_000, problems),
  }
  if (guards.requestTimeoutMs < guards.headersTimeoutMs) {
    problems.push(`REQUEST_TIMEOUT_MS: must be at least HEADERS_TIMEOUT_MS (${guards.headersTimeoutMs}), got ${guards.requestTimeoutMs}`)
  }

  const logLevelRaw = (env.LOG_LEVEL?.trim() || 'info').toLowerCase()
  if (!LOG_LEVELS.includes(logLevelRaw as LogLevel)) {
    problems.push(`LOG_LEVEL: must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(env.LOG_LEVEL)}`)
  }
  const logLevel = (LOG_LEVELS.includes(logLevelRaw as LogLevel) ? logLevelRaw : 'info') as LogLevel

  const redisUrl = urlFromEnv(env, 'REDIS_URL', ['redis:', 'rediss:'], problems)
  const nvidiaBaseUrl = urlFromEnv(env, 'NVIDIA_BASE_URL', ['http:', 'https:'], problems) ?? DEFAULT_NVIDIA_BASE_URL
  const nvidiaStatusUrl = (urlFromEnv(env, 'NVIDIA_STATUS_URL', ['http:', 'https:'], problems) ?? DEFAULT_NVIDIA_STATUS_URL).replace(
    /\/+$/,
    '',
  )

  const redisClusterNodes = parseClusterNodes(env.REDIS_CLUSTER_NODES, problems)
  const failureMode = (env.REDIS_FAILURE_MODE?.trim() || 'open').toLowerCase()
  if (failureMode !== 'open' && failureMode !== 'closed') {
    problems.push(`REDIS_FAILURE_MODE: must be open or closed, got ${JSON.stringify(env.REDIS_FAILURE_MODE)}`)
  }
  const usageBufferMax = intFromEnv(env, 'USAGE_BUFFER_MAX', 100_000, 0, 100_000_000, problems)
  const trustProxy = parseTrustProxy(env.TRUST_PROXY)
  const adminToken = env.ADMIN_TOKEN?.trim() || null
  if (adminToken !== null && adminToken.length < 16) {
    problems.push('ADMIN_TOKEN: must be at least 16 characters (use e.g. `openssl rand -hex 32`)')
  }

  const configFile = env.TOLLGATE_CONFIG?.trim() || null
  const file = configFile ? readConfigFile(configFile, readFile, problems) : {}
  const where = configFile ?? 'config'

  // Upstreams: the built-in `nvidia` one from the environment, unless the file defines its own.
  const nvidiaKeys = parseKeys(env.NVIDIA_API_KEY)
  const nvidiaBudget = env.NVIDIA_KEY_REQUESTS_PER_MINUTE?.trim()
    ? intFromEnv(env, 'NVIDIA_KEY_REQUESTS_PER_MINUTE', 0, 1, 1_000_000, problems)
    : null
  const nvidiaRetries = intFromEnv(env, 'NVIDIA_RETRIES', DEFAULT_RETRY.retries, 0, 10, problems)
  const upstreams: Record<string, UpstreamConfig> = {
    nvidia: {
      name: 'nvidia',
      baseUrl: nvidiaBaseUrl.replace(/\/+$/, ''),
      apiKeys: nvidiaKeys,
      keyEnv: 'NVIDIA_API_KEY',
      keyBudgets: nvidiaKeys.map(() => nvidiaBudget),
      timeouts: { ...DEFAULT_TIMEOUTS },
      ...DEFAULT_RETRY,
      retries: nvidiaRetries,
      statusUrl: nvidiaStatusUrl,
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
      baseUrl: u.base_url.replace(/\/+$/, ''),
      apiKeys,
      keyEnv: keyEnv ?? null,
      keyBudgets: apiKeys.map((_, i) => (Array.isArray(budgets) ? (budgets[i] ?? null) : (budgets ?? null))),
      retries: u.retries ?? (name === 'nvidia' ? nvidiaRetries : DEFAULT_RETRY.retries),
      retryBaseMs: u.retry_base_ms ?? DEFAULT_RETRY.retryBaseMs,
      keyWaitMs: u.key_wait_ms ?? DEFAULT_RETRY.keyWaitMs,
      statusUrl: u.status_url?.replace(/\/+$/, '') ?? nvidiaStatusUrl,
      timeouts: {
        connectMs: u.timeouts?.connect_ms ?? DEFAULT_TIMEOUTS.connectMs,
        headersMs: u.timeouts?.headers_ms ?? DEFAULT_TIMEOUTS.headersMs,
        idleMs: u.timeouts?.idle_ms ?? DEFAULT_TIMEOUTS.idleMs,
      },
    }
  }

  const defaultUpstream = file.default_upstream === undefined ? 'nvidia' : file.default_upstream
  if (defaultUpstream !== null && !upstreams[defaultUpstream]) {
    problems.push(`${where}: default_upstream: no upstream named ${JSON.stringify(defaultUpstream)}`)
  }

  // Models: built-in defaults first; the file's entries replace them name by name.
  const models: Record<string, ModelConfig> = {}
  if (defaultUpstream !== null && upstreams[defaultUpstream]) {
    for (const [name, defaults] of Object.entries(BUILTIN_MODEL_DEFAULTS)) {
      models[name] = { name, upstream: defaultUpstream, upstreamModel: name, defaults: { ...defaults }, fallbacks: [] }
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

  if (problems.length > 0) throw new ConfigError(problems)

  return {
    port,
    host,
    metricsPort,
    logLevel,
    bodyLimitBytes,
    drainTimeoutMs,
    redisUrl,
    redisFailureMode: failureMode === 'closed' ? 'closed' : 'open',
    usageBufferMax,
    adminToken,
    upstreams,
    models,
    aliases,
    defaultUpstream,
    modelsCacheMs: (file.models_cache_seconds ?? 60) * 1000,
    redisClusterNodes,
    trustProxy,
    quotas: {
      completionReservation: file.quotas?.default_completion_tokens ?? 4096,
      usageRetentionDays: file.quotas?.usage_retention_days ?? 400,
      auditMaxLen: file.quotas?.audit_max_len ?? 100_000,
      authFailuresPerMinute: file.quotas?.auth_failures_per_minute ?? 30,
    },
    guards,
    keys: { rotationGraceSeconds: file.keys?.rotation_grace_seconds ?? 86_400 },
    teams: Object.entries(file.teams ?? {}).map(([id, t]) => ({
      id,
      ...(t.name !== undefined ? { name: t.name } : {}),
      limits: t.limits ?? {},
      model_limits: t.model_limits ?? {},
    })),
    configFile,
  }
}
