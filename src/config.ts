import { readFileSync } from 'node:fs'
import { intFromEnv, parseClusterNodes, parseTrustProxy, urlFromEnv, type Env } from './config/env.js'
import { readConfigFile, type FileConfig, type ReadFile } from './config/file.js'
import type { AlertSettings, Config, GuardSettings, LogLevel } from './config/types.js'
import { ConfigError } from './config/types.js'
import { aliasesFrom, defaultUpstreamFrom, modelsFrom, upstreamsFrom, type Source } from './config/upstreams.js'

/**
 * Configuration: environment variables plus an optional YAML file (TOLLGATE_CONFIG) for
 * upstreams, models, aliases and per-model defaults. loadConfig either returns a complete Config
 * or throws one ConfigError that names every problem; the gateway never starts half-configured.
 * Its parts: the server, its guards, Redis, the upstreams and models (config/upstreams.ts), and
 * what the file alone says (quotas, keys, console, teams).
 */

export * from './config/types.js'
export type { Env } from './config/env.js'

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const MiB = 1024 * 1024

export function loadConfig(env: Env, readFile: ReadFile = (p) => readFileSync(p, 'utf8')): Config {
  const problems: string[] = []
  const configFile = env.TOLLGATE_CONFIG?.trim() || null
  const file = configFile ? readConfigFile(configFile, readFile, problems) : {}
  const source: Source = { env, file, where: configFile ?? 'config', problems }
  const server = serverFrom(env, problems)
  const guards = guardsFrom(env, problems)
  const redis = redisFrom(env, problems)
  const upstreams = upstreamsFrom(source)
  const defaultUpstream = defaultUpstreamFrom(source, upstreams)
  const models = modelsFrom(source, upstreams, defaultUpstream)
  const aliases = aliasesFrom(source, models, defaultUpstream)
  const alerts = alertsFrom(source)
  if (problems.length > 0) throw new ConfigError(problems)
  return { ...server, ...redis, guards, upstreams, defaultUpstream, models, aliases, alerts, ...fromFileOnly(file), configFile }
}

/** The listener, logging, body limit, drain and admin token. */
function serverFrom(env: Env, problems: string[]) {
  const logLevelRaw = (env.LOG_LEVEL?.trim() || 'info').toLowerCase()
  const known = LOG_LEVELS.includes(logLevelRaw as LogLevel)
  if (!known) problems.push(`LOG_LEVEL: must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(env.LOG_LEVEL)}`)
  const adminToken = env.ADMIN_TOKEN?.trim() || null
  if (adminToken !== null && adminToken.length < 16) {
    problems.push('ADMIN_TOKEN: must be at least 16 characters (use e.g. `openssl rand -hex 32`)')
  }
  return {
    port: intFromEnv(env, 'PORT', 8080, 0, 65_535, problems),
    host: env.HOST?.trim() || '0.0.0.0',
    metricsPort: env.METRICS_PORT?.trim() ? intFromEnv(env, 'METRICS_PORT', 0, 1, 65_535, problems) : null,
    logLevel: (known ? logLevelRaw : 'info') as LogLevel,
    bodyLimitBytes: intFromEnv(env, 'BODY_LIMIT_BYTES', 10 * MiB, 1024, 1024 * MiB, problems),
    drainTimeoutMs: intFromEnv(env, 'DRAIN_TIMEOUT_MS', 30_000, 0, 3_600_000, problems),
    trustProxy: parseTrustProxy(env.TRUST_PROXY),
    adminToken,
  }
}

/** What keeps one client, or one upstream, from exhausting the gateway. */
function guardsFrom(env: Env, problems: string[]): GuardSettings {
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
  return guards
}

/** Where Redis is, and what the gateway does while it is away. */
function redisFrom(env: Env, problems: string[]) {
  const failureMode = (env.REDIS_FAILURE_MODE?.trim() || 'open').toLowerCase()
  if (failureMode !== 'open' && failureMode !== 'closed') {
    problems.push(`REDIS_FAILURE_MODE: must be open or closed, got ${JSON.stringify(env.REDIS_FAILURE_MODE)}`)
  }
  return {
    redisUrl: urlFromEnv(env, 'REDIS_URL', ['redis:', 'rediss:'], problems),
    redisClusterNodes: parseClusterNodes(env.REDIS_CLUSTER_NODES, problems),
    redisFailureMode: (failureMode === 'closed' ? 'closed' : 'open') as 'open' | 'closed',
    usageBufferMax: intFromEnv(env, 'USAGE_BUFFER_MAX', 100_000, 0, 100_000_000, problems),
  }
}

/** Webhook alerts: the file's settings, the secret from the file or from the variable it names. */
function alertsFrom({ env, file, where, problems }: Source): AlertSettings | null {
  const a = file.alerts
  if (a === undefined) return null
  const secret = a.secret ?? env[a.secret_env!]?.trim() ?? ''
  if (secret.length < 16)
    problems.push(`${where}: alerts.secret_env: environment variable ${a.secret_env} must hold at least 16 characters`)
  return { webhookUrl: a.webhook_url, secret, thresholds: [...(a.thresholds ?? [0.5, 0.8, 1])].sort((x, y) => x - y) }
}

/** What only the file sets: model list caching, quota settings, key rotation, the teams it declares. */
function fromFileOnly(file: FileConfig) {
  return {
    modelsCacheMs: (file.models_cache_seconds ?? 60) * 1000,
    quotas: {
      completionReservation: file.quotas?.default_completion_tokens ?? 4096,
      usageRetentionDays: file.quotas?.usage_retention_days ?? 400,
      auditMaxLen: file.quotas?.audit_max_len ?? 100_000,
      authFailuresPerMinute: file.quotas?.auth_failures_per_minute ?? 30,
    },
    keys: { rotationGraceSeconds: file.keys?.rotation_grace_seconds ?? 86_400 },
    console: { sessionSeconds: file.console?.session_seconds ?? 8 * 3_600 },
    teams: Object.entries(file.teams ?? {}).map(([id, t]) => ({
      id,
      ...(t.name !== undefined ? { name: t.name } : {}),
      limits: t.limits ?? {},
      model_limits: t.model_limits ?? {},
      allowed_models: t.allowed_models ?? null,
      end_user_limits: t.end_user_limits ?? {},
    })),
  }
}
