import type { FastifyBaseLogger } from 'fastify'
import { MemoryAlertClaims, RedisAlertClaims } from '../alerts/claims.js'
import { AlertNotifier } from '../alerts/notifier.js'
import { RedisAudit } from '../audit/redis.js'
import { ResilientAudit } from '../audit/resilient.js'
import { NO_AUDIT, type AuditLog } from '../audit/types.js'
import type { Config, TeamSeed } from '../config.js'
import { MemorySessions, RedisSessions, type SessionStore } from '../console/sessions.js'
import type { Metrics } from '../metrics.js'
import { LeaseKeeper } from '../quota/leases.js'
import { MemoryQuotas } from '../quota/memory.js'
import { RedisQuotas } from '../quota/redis.js'
import { ResilientQuotas } from '../quota/resilient.js'
import type { QuotaEngine } from '../quota/types.js'
import { connectRedis, whenReady, type RedisClient } from '../redis/connection.js'
import { KeyActivity } from '../store/key-activity.js'
import { MemoryStore } from '../store/memory.js'
import { PrincipalCache } from '../store/principal-cache.js'
import { RedisStore } from '../store/redis.js'
import type { Store } from '../store/types.js'

export interface DataDeps {
  /** A store to use instead of the one the config names; the caller closes it. */
  store?: Store
  /** Quotas to use; by default Redis quotas on a Redis store's client, else in memory. */
  quotas?: QuotaEngine
}

type Backlog = { waiting: number; dropped: number }

/** Where the gateway keeps what it knows: teams and keys, quotas, leases, the audit trail. */
export interface Data {
  store: Store
  /** The Redis connection, if the store is in Redis. */
  redis: RedisClient | null
  /** Whether Redis is connected now (always true without it). */
  redisUp: () => boolean
  quotas: QuotaEngine
  leases: LeaseKeeper
  audit: AuditLog
  /** The web console's sessions: in Redis with a Redis store, so every instance knows them. */
  sessions: SessionStore
  /** Webhook alerts (config `alerts`), or null. */
  alerts: AlertNotifier | null
  /** Keys looked up once and cached; every change anywhere drops them at once (pub/sub). */
  principals: PrincipalCache
  activity: KeyActivity
  /** What waits for Redis, and what was dropped, per buffer; null without Redis. */
  backlogs: (() => Record<'usage' | 'audit', Backlog>) | null
  /** Admissions decided by this instance's own limits while Redis was away. */
  localAdmissions: () => number
  /** At shutdown, after the last request: writes what waits, and closes what was opened here. */
  close: () => Promise<void>
}

/**
 * The store the config names (Redis, a Redis Cluster, or the embedded one), with Redis quotas and
 * audit trail that outlive an outage (resilient.ts) on the same connection, or memory quotas. The
 * config file's teams are created, or brought up to date, once the store answers.
 */
export async function openData(config: Config, deps: DataDeps, log: FastifyBaseLogger, now: () => number, metrics: Metrics): Promise<Data> {
  const ownStore = deps.store === undefined
  const store = deps.store ?? createStore(config, log)
  const redisStore = store instanceof RedisStore ? store : null
  const redis = redisStore?.client ?? null
  const redisUp = () => redisStore?.up ?? true
  const bufferMax = config.usageBufferMax
  const resilient = redis
    ? new ResilientQuotas({
        primary: new RedisQuotas({ client: redis, usageRetentionDays: config.quotas.usageRetentionDays }),
        up: redisUp,
        mode: config.redisFailureMode,
        bufferMax,
        log,
      })
    : null
  const audit = redis
    ? new ResilientAudit({ primary: new RedisAudit({ client: redis, maxLen: config.quotas.auditMaxLen }), up: redisUp, bufferMax, log })
    : null
  // Redis back after an outage: write the usage and audit entries that waited.
  redis?.on('ready', () => {
    void resilient?.flush().then(() => audit?.resend())
  })
  const quotas = deps.quotas ?? resilient ?? new MemoryQuotas()
  const leases = new LeaseKeeper(quotas, now, log)
  const activity = new KeyActivity(store, log)
  const alerts = config.alerts
    ? new AlertNotifier({
        settings: config.alerts,
        claims: redis ? new RedisAlertClaims(redis) : new MemoryAlertClaims(now),
        quotas,
        metrics,
        log,
      })
    : null
  const principals = new PrincipalCache()
  store.onChange((change) => principals.invalidate(change))

  const seedTeams = async () => {
    for (const seed of config.teams) await seedTeam(store, seed, now)
  }
  if (redis && !(await whenReady(redis, 5_000))) {
    // Start anyway (fail-open serves, fail-closed answers 503) and seed once Redis is there.
    log.warn({ failure_mode: config.redisFailureMode }, 'redis is not reachable yet; starting anyway and retrying')
    redis.once('ready', () => void seedTeams().catch((err: unknown) => log.error({ err }, 'could not create the teams of the config file')))
  } else {
    await seedTeams()
  }

  return {
    store,
    redis,
    redisUp,
    quotas,
    leases,
    audit: audit ?? NO_AUDIT,
    alerts,
    sessions: redis ? new RedisSessions(redis) : new MemorySessions(),
    principals,
    activity,
    backlogs: resilient && audit ? () => ({ usage: resilient.backlog(), audit: audit.backlog() }) : null,
    localAdmissions: () => resilient?.localAdmissions ?? 0,
    close: async () => {
      await alerts?.drained()
      leases.close()
      await activity.close()
      resilient?.close()
      audit?.close()
      await resilient?.flush()
      await audit?.resend()
      // (A failed write of the last batch puts its entries in the buffer: counted as lost below.)
      await audit?.flush()
      await resilient?.shutdown()
      if (resilient && audit) {
        for (const [name, { waiting }] of Object.entries({ usage: resilient.backlog(), audit: audit.backlog() })) {
          if (waiting > 0) log.error({ waiting }, `${name} records still waiting for redis at shutdown are lost`)
        }
      }
      if (ownStore) await store.close()
    },
  }
}

function createStore(config: Config, log: FastifyBaseLogger): Store {
  const client = connectRedis(config, log)
  if (client !== null) return new RedisStore({ client, ownsClient: true })
  log.warn('no REDIS_URL: using the embedded store; its teams and keys live in this process only and are gone when it exits')
  return new MemoryStore()
}

/** A team declared in the config file exists, with the file's limits. */
async function seedTeam(store: Store, seed: TeamSeed, now: () => number): Promise<void> {
  const at = new Date(now()).toISOString()
  const created = await store.createTeam({
    id: seed.id,
    name: seed.name ?? seed.id,
    limits: seed.limits,
    model_limits: seed.model_limits,
    allowed_models: seed.allowed_models,
    end_user_limits: seed.end_user_limits,
    created_at: at,
    updated_at: at,
  })
  if (!created) {
    const { limits, model_limits, allowed_models, end_user_limits } = seed
    await store.updateTeam(
      seed.id,
      { limits, model_limits, allowed_models, end_user_limits, ...(seed.name ? { name: seed.name } : {}) },
      at,
    )
  }
}
