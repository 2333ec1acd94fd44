import type { AllowedModels } from '../access.js'
import type { Limits } from '../limits.js'
import type { Price } from '../spend.js'

/** What the gateway is configured with (loadConfig, src/config.ts, makes it). */

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
  /** What its tokens cost (config `price`); null: nothing (a model without a price costs 0). */
  price: Price | null
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
  /** The models the team's keys may use (access.ts); null: every model. */
  allowed_models: AllowedModels
  /** Limits for each of the team's end users on its own. */
  end_user_limits: Limits
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

export interface AlertSettings {
  webhookUrl: string
  /** The HMAC-SHA256 key of the x-tollgate-signature header. */
  secret: string
  /** Shares of a limit (0 < t ≤ 1), ascending. */
  thresholds: number[]
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
  /** The web console: how long a sign-in lasts. */
  console: { sessionSeconds: number }
  /** Webhook alerts when a team or key crosses a share of a day or month quota or budget; null: none. */
  alerts: AlertSettings | null
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

/** Defaults of the built-in `nvidia` upstream, and of every upstream. */
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
