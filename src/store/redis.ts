import { readFileSync } from 'node:fs'
import { Cluster, Redis } from 'ioredis'
import type { Limits } from '../limits.js'
import type { Invalidation } from './principal-cache.js'
import type { ApiKeyRecord, KeyPatch, Principal, Store, Team, TeamPatch } from './types.js'

/**
 * Teams and keys in Redis, shared by every gateway instance. All directory keys carry the one
 * hash tag `{dir}`, so the multi-key scripts also run on a Redis Cluster. Authentication is one
 * HGETALL of `keyhash:<sha256>`; revocation deletes it, so a revoked key fails at once everywhere.
 *
 *   <prefix>{dir}:teams             set of team ids
 *   <prefix>{dir}:team:<id>         hash: id name limits model_limits (JSON) created_at updated_at
 *   <prefix>{dir}:teamkeys:<id>     set of the team's key ids
 *   <prefix>{dir}:key:<key id>      hash: the key record ('' stands for null)
 *   <prefix>{dir}:keyhash:<sha256>  hash: the same record, while the key is active
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
type ScriptName = (typeof SCRIPTS)[number]
type ScriptFn = (...args: (string | number)[]) => Promise<unknown>

function loadScript(name: ScriptName): string {
  return readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8')
}

const KEY_FIELDS = ['id', 'team', 'name', 'hash', 'hint', 'created_at', 'expires_at', 'revoked_at', 'last_used_at', 'replaced_by'] as const

function keyToFields(key: ApiKeyRecord): string[] {
  return [...KEY_FIELDS.flatMap((f) => [f, key[f] ?? '']), 'limits', JSON.stringify(key.limits)]
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
    created_at: h.created_at ?? '',
    expires_at: h.expires_at || null,
    revoked_at: h.revoked_at || null,
    last_used_at: h.last_used_at || null,
    replaced_by: h.replaced_by || null,
  }
}

function teamFromHash(h: Record<string, string>): Team | null {
  if (!h.id) return null
  return {
    id: h.id,
    name: h.name ?? h.id,
    limits: h.limits ? (JSON.parse(h.limits) as Limits) : {},
    model_limits: h.model_limits ? (JSON.parse(h.model_limits) as Record<string, Limits>) : {},
    created_at: h.created_at ?? '',
    updated_at: h.updated_at ?? '',
  }
}

/**
 * While Redis is away, commands fail at once instead of queueing (the gateway then serves on
 * from memory, or answers 503, as configured), and none waits long for an answer.
 */
export const REDIS_OPTIONS = {
  // Commands issued in the same tick go out in one write: a write per command was 15 % of the
  // gateway's CPU under load (profiled).
  enableAutoPipelining: true,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 2_000,
  connectTimeout: 5_000,
} as const

/**
 * How Redis evicts keys when it is full, if it can: a `maxmemory` set, and a policy other than
 * `noeviction`. Every quota key carries a TTL, so even the `volatile-*` policies may take them, and
 * an evicted key forgets what a limit has counted. Null when nothing can be evicted. On a cluster,
 * the first master found that can. (INFO, not CONFIG: managed Redis services often refuse CONFIG.)
 */
export async function evictionPolicy(client: Redis | Cluster): Promise<{ policy: string; maxmemory: number } | null> {
  for (const node of client instanceof Cluster ? client.nodes('master') : [client]) {
    const info = await node.info('memory')
    const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1]
    const maxmemory = Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0)
    if (policy !== undefined && policy !== 'noeviction' && maxmemory > 0) return { policy, maxmemory }
  }
  return null
}

export interface RedisStoreOptions {
  /** A client to use (closed by close() only with ownsClient), or a URL to connect to (closed by close()). */
  client?: Redis | Cluster
  ownsClient?: boolean
  url?: string
  /** Namespace of every key; lets several gateways or tests share one Redis. */
  prefix?: string
  /** Where connection trouble is reported (once per outage, not once per retry). */
  log?: { warn: (obj: object, msg: string) => void; info: (obj: object, msg: string) => void }
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const
  readonly client: Redis | Cluster
  private readonly ownsClient: boolean
  private readonly dir: string
  private readonly scripts: Record<ScriptName, ScriptFn>
  /** Changes are broadcast here, so every instance's caches drop them at once. */
  private readonly channel: string
  private subscriber: Redis | Cluster | null = null
  private readonly listeners: ((change: Invalidation) => void)[] = []

  constructor(options: RedisStoreOptions) {
    if (options.client) {
      this.client = options.client
      this.ownsClient = options.ownsClient ?? false
    } else if (options.url) {
      this.client = new Redis(options.url, REDIS_OPTIONS)
      this.ownsClient = true
    } else {
      throw new Error('RedisStore needs a client or a url')
    }
    if (this.ownsClient) {
      let down = false
      this.client.on('error', (err: Error) => {
        if (down) return
        down = true
        options.log?.warn({ err: err.message }, 'redis connection lost; retrying')
      })
      this.client.on('ready', () => {
        if (!down) return
        down = false
        options.log?.info({}, 'redis connection restored')
      })
    }
    this.dir = `${options.prefix ?? 'tg:'}{dir}:`
    this.channel = `${options.prefix ?? 'tg:'}changes`
    const scripts = {} as Record<ScriptName, ScriptFn>
    for (const name of SCRIPTS) {
      const command = `tollgate_${name}`
      this.client.defineCommand(command, { lua: loadScript(name) })
      const fn = (this.client as unknown as Record<string, (...a: unknown[]) => Promise<number>>)[command]!
      scripts[name] = (...args) => fn.call(this.client, ...args)
    }
    this.scripts = scripts
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
      'created_at',
      team.created_at,
      'updated_at',
      team.updated_at,
    ]
    const created = await this.scripts.create_team(2, this.k(`team:${team.id}`), this.k('teams'), team.id, ...fields)
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
    const updated = await this.scripts.update_team(1, this.k(`team:${id}`), ...fields)
    if (updated !== 1) return null
    await this.changed({ kind: 'team', id })
    return this.getTeam(id)
  }

  async deleteTeam(id: string): Promise<boolean> {
    const keys = [this.k(`team:${id}`), this.k('teams'), this.k(`teamkeys:${id}`)]
    const deleted = (await this.scripts.delete_team(3, ...keys, id, this.dir)) === 1
    if (deleted) await this.changed({ kind: 'team', id })
    return deleted
  }

  async createKey(key: ApiKeyRecord): Promise<boolean> {
    const keys = [this.k(`team:${key.team}`), this.k(`key:${key.id}`), this.k(`keyhash:${key.hash}`), this.k(`teamkeys:${key.team}`)]
    return (await this.scripts.create_key(4, ...keys, key.id, ...keyToFields(key))) === 1
  }

  async authenticate(hash: string): Promise<Principal | null> {
    const found = await this.scripts.authenticate(1, this.k(`keyhash:${hash}`), this.dir)
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
    if (patch.expires_at !== undefined) fields.push('expires_at', patch.expires_at ?? '')
    if (patch.replaced_by !== undefined) fields.push('replaced_by', patch.replaced_by ?? '')
    if (fields.length > 0 && (await this.scripts.update_key(1, this.k(`key:${id}`), this.dir, ...fields)) !== 1) return null
    await this.changed({ kind: 'key', id })
    return this.getKey(id)
  }

  async touchKeys(lastUsed: Map<string, string>): Promise<void> {
    if (lastUsed.size === 0) return
    const ids = [...lastUsed.keys()]
    await this.scripts.touch_keys(ids.length, ...ids.map((id) => this.k(`key:${id}`)), ...ids.map((id) => lastUsed.get(id)!))
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
    const revoked = (await this.scripts.revoke_key(1, this.k(`key:${id}`), this.dir, now)) === 1
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

  /** Resolves true once ready, or false after `timeoutMs`. */
  async ready(timeoutMs: number): Promise<boolean> {
    if (this.up) return true
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.client.off('ready', onReady)
        resolve(false)
      }, timeoutMs)
      const onReady = () => {
        clearTimeout(timer)
        resolve(true)
      }
      this.client.once('ready', onReady)
    })
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
