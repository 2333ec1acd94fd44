import { Cluster } from 'ioredis'
import type { AllowedModels } from '../access.js'
import type { Limits } from '../limits.js'
import type { RedisClient } from '../redis/connection.js'
import { RedisKeys } from '../redis/keys.js'
import { scripts, type LuaScript } from '../redis/scripts.js'
import type { Invalidation } from './principal-cache.js'
import type { ApiKeyRecord, KeyPatch, Principal, Store, Team, TeamPatch } from './types.js'

/**
 * Teams and keys in Redis, shared by every gateway instance. All directory keys carry the one
 * hash tag `{dir}` (redis/keys.ts), so the multi-key scripts also run on a Redis Cluster.
 * Authentication is one HGETALL of `keyhash:<sha256>`; revocation deletes it, so a revoked key
 * fails at once everywhere.
 */

const SCRIPTS = [
  'create_team',
  'update_team',
  'delete_team',
  'create_key',
  'revoke_key',
  'update_key',
  'authenticate',
  'touch_keys',
] as const

const KEY_FIELDS = ['id', 'team', 'name', 'hash', 'hint', 'created_at', 'expires_at', 'revoked_at', 'last_used_at', 'replaced_by'] as const

function keyToFields(key: ApiKeyRecord): string[] {
  return [
    ...KEY_FIELDS.flatMap((f) => [f, key[f] ?? '']),
    'limits',
    JSON.stringify(key.limits),
    'allowed_models',
    JSON.stringify(key.allowed_models),
  ]
}

/** HGETALL's flat [field, value, …] array (what scripts return) as an object. */
function pairs(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (!Array.isArray(flat)) return out
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1])
  return out
}

function keyFromHash(h: Record<string, string>): ApiKeyRecord | null {
  if (!h.id || !h.hash || !h.team) return null
  return {
    id: h.id,
    team: h.team,
    name: h.name || null,
    hash: h.hash,
    hint: h.hint ?? '',
    limits: h.limits ? (JSON.parse(h.limits) as Limits) : {},
    allowed_models: allowedModels(h.allowed_models),
    created_at: h.created_at ?? '',
    expires_at: h.expires_at || null,
    revoked_at: h.revoked_at || null,
    last_used_at: h.last_used_at || null,
    replaced_by: h.replaced_by || null,
  }
}

/** A stored list (JSON); none stored (a record older than the field) is every model. */
function allowedModels(field: string | undefined): AllowedModels {
  return field ? (JSON.parse(field) as AllowedModels) : null
}

function teamFromHash(h: Record<string, string>): Team | null {
  if (!h.id) return null
  return {
    id: h.id,
    name: h.name ?? h.id,
    limits: h.limits ? (JSON.parse(h.limits) as Limits) : {},
    model_limits: h.model_limits ? (JSON.parse(h.model_limits) as Record<string, Limits>) : {},
    allowed_models: allowedModels(h.allowed_models),
    end_user_limits: h.end_user_limits ? (JSON.parse(h.end_user_limits) as Limits) : {},
    created_at: h.created_at ?? '',
    updated_at: h.updated_at ?? '',
  }
}

export interface RedisStoreOptions {
  /** The connection (redis/connection.ts); close() closes it only with ownsClient. */
  client: RedisClient
  ownsClient?: boolean
  /** Namespace of every key; lets several gateways or tests share one Redis. */
  prefix?: string
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const
  readonly client: RedisClient
  private readonly ownsClient: boolean
  private readonly dir: string
  private readonly scripts: Record<(typeof SCRIPTS)[number], LuaScript>
  /** Changes are broadcast here, so every instance's caches drop them at once. */
  private readonly channel: string
  private subscriber: RedisClient | null = null
  private readonly listeners: ((change: Invalidation) => void)[] = []

  constructor(options: RedisStoreOptions) {
    this.client = options.client
    this.ownsClient = options.ownsClient ?? false
    const keys = new RedisKeys(options.prefix)
    this.dir = keys.dir
    this.channel = keys.changes
    this.scripts = scripts(this.client, SCRIPTS)
  }

  private k(suffix: string): string {
    return this.dir + suffix
  }

  onChange(listener: (change: Invalidation) => void): void {
    this.listeners.push(listener)
    if (this.subscriber) return
    // A connection of its own (subscribed connections can do nothing else), queueing its
    // SUBSCRIBE until connected. After any reconnect, changes may have been missed: say so.
    const sub =
      this.client instanceof Cluster
        ? this.client.duplicate(undefined, { enableOfflineQueue: true })
        : this.client.duplicate({ enableOfflineQueue: true })
    this.subscriber = sub
    sub.on('error', () => undefined) // the main connection reports outages
    let connectedOnce = false
    sub.on('ready', () => {
      if (connectedOnce) this.emit({ kind: 'all' })
      connectedOnce = true
    })
    sub.on('message', (_channel: string, message: string) => {
      try {
        this.emit(JSON.parse(message) as Invalidation)
      } catch {
        this.emit({ kind: 'all' })
      }
    })
    void sub.subscribe(this.channel).catch(() => undefined)
  }

  private emit(change: Invalidation): void {
    for (const listener of this.listeners) listener(change)
  }

  /** Tells every instance (this one included) that a key or team changed. */
  private async changed(change: Invalidation): Promise<void> {
    this.emit(change) // at once here, whatever pub/sub does
    await this.client.publish(this.channel, JSON.stringify(change)).catch(() => undefined)
  }

  async createTeam(team: Team): Promise<boolean> {
    const fields = [
      'id',
      team.id,
      'name',
      team.name,
      'limits',
      JSON.stringify(team.limits),
      'model_limits',
      JSON.stringify(team.model_limits),
      'allowed_models',
      JSON.stringify(team.allowed_models),
      'end_user_limits',
      JSON.stringify(team.end_user_limits),
      'created_at',
      team.created_at,
      'updated_at',
      team.updated_at,
    ]
    const created = await this.scripts.create_team.run([this.k(`team:${team.id}`), this.k('teams')], [team.id, ...fields])
    return created === 1
  }

  async getTeam(id: string): Promise<Team | null> {
    return teamFromHash(await this.client.hgetall(this.k(`team:${id}`)))
  }

  async listTeams(): Promise<Team[]> {
    const ids = await this.client.smembers(this.k('teams'))
    const teams = await this.hgetallMany(ids.map((id) => this.k(`team:${id}`)))
    return teams
      .map(teamFromHash)
      .filter((t): t is Team => t !== null)
      .sort((a, b) => a.id.localeCompare(b.id))
  }

  async updateTeam(id: string, patch: TeamPatch, now: string): Promise<Team | null> {
    const fields: string[] = ['updated_at', now]
    if (patch.name !== undefined) fields.push('name', patch.name)
    if (patch.limits !== undefined) fields.push('limits', JSON.stringify(patch.limits))
    if (patch.model_limits !== undefined) fields.push('model_limits', JSON.stringify(patch.model_limits))
    if (patch.allowed_models !== undefined) fields.push('allowed_models', JSON.stringify(patch.allowed_models))
    if (patch.end_user_limits !== undefined) fields.push('end_user_limits', JSON.stringify(patch.end_user_limits))
    const updated = await this.scripts.update_team.run([this.k(`team:${id}`)], fields)
    if (updated !== 1) return null
    await this.changed({ kind: 'team', id })
    return this.getTeam(id)
  }

  async deleteTeam(id: string): Promise<boolean> {
    const keys = [this.k(`team:${id}`), this.k('teams'), this.k(`teamkeys:${id}`)]
    const deleted = (await this.scripts.delete_team.run(keys, [id, this.dir])) === 1
    if (deleted) await this.changed({ kind: 'team', id })
    return deleted
  }

  async createKey(key: ApiKeyRecord): Promise<boolean> {
    const keys = [this.k(`team:${key.team}`), this.k(`key:${key.id}`), this.k(`keyhash:${key.hash}`), this.k(`teamkeys:${key.team}`)]
    return (await this.scripts.create_key.run(keys, [key.id, ...keyToFields(key)])) === 1
  }

  async authenticate(hash: string): Promise<Principal | null> {
    const found = await this.scripts.authenticate.run([this.k(`keyhash:${hash}`)], [this.dir])
    if (!Array.isArray(found)) return null
    const key = keyFromHash(pairs(found[0]))
    const team = teamFromHash(pairs(found[1]))
    return key && team && key.revoked_at === null ? { key, team } : null
  }

  async getKey(id: string): Promise<ApiKeyRecord | null> {
    return keyFromHash(await this.client.hgetall(this.k(`key:${id}`)))
  }

  async updateKey(id: string, patch: KeyPatch): Promise<ApiKeyRecord | null> {
    const fields: string[] = []
    if (patch.name !== undefined) fields.push('name', patch.name ?? '')
    if (patch.limits !== undefined) fields.push('limits', JSON.stringify(patch.limits))
    if (patch.allowed_models !== undefined) fields.push('allowed_models', JSON.stringify(patch.allowed_models))
    if (patch.expires_at !== undefined) fields.push('expires_at', patch.expires_at ?? '')
    if (patch.replaced_by !== undefined) fields.push('replaced_by', patch.replaced_by ?? '')
    if (fields.length > 0 && (await this.scripts.update_key.run([this.k(`key:${id}`)], [this.dir, ...fields])) !== 1) return null
    await this.changed({ kind: 'key', id })
    return this.getKey(id)
  }

  async touchKeys(lastUsed: Map<string, string>): Promise<void> {
    if (lastUsed.size === 0) return
    const ids = [...lastUsed.keys()]
    await this.scripts.touch_keys.run(
      ids.map((id) => this.k(`key:${id}`)),
      ids.map((id) => lastUsed.get(id)!),
    )
  }

  async listKeys(team: string): Promise<ApiKeyRecord[]> {
    const ids = await this.client.smembers(this.k(`teamkeys:${team}`))
    const records = await this.hgetallMany(ids.map((id) => this.k(`key:${id}`)))
    return records
      .map(keyFromHash)
      .filter((k): k is ApiKeyRecord => k !== null)
      .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id))
  }

  async revokeKey(id: string, now: string): Promise<boolean> {
    const revoked = (await this.scripts.revoke_key.run([this.k(`key:${id}`)], [this.dir, now])) === 1
    if (revoked) await this.changed({ kind: 'key', id })
    return revoked
  }

  async ping(): Promise<void> {
    await this.client.ping()
  }

  /** Connected and ready for commands. */
  get up(): boolean {
    return this.client.status === 'ready'
  }

  async close(): Promise<void> {
    this.subscriber?.disconnect()
    if (this.ownsClient) await this.client.quit().catch(() => this.client.disconnect())
  }

  private async hgetallMany(keys: string[]): Promise<Record<string, string>[]> {
    if (keys.length === 0) return []
    const pipeline = this.client.pipeline()
    for (const key of keys) pipeline.hgetall(key)
    const results = (await pipeline.exec()) ?? []
    return results.map(([err, value]) => {
      if (err) throw err
      return value as Record<string, string>
    })
  }
}
