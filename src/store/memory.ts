import type { Invalidation } from './principal-cache.js'
import type { ApiKeyRecord, KeyPatch, Principal, Store, Team, TeamPatch } from './types.js'

/**
 * The embedded store: everything in this process's memory, gone when it exits. The default when
 * REDIS_URL is unset, so the gateway starts with nothing else installed.
 */
export class MemoryStore implements Store {
  readonly kind = 'memory' as const
  private readonly teams = new Map<string, Team>()
  private readonly keys = new Map<string, ApiKeyRecord>()
  private readonly keyIdByHash = new Map<string, string>()
  private readonly listeners: ((change: Invalidation) => void)[] = []

  onChange(listener: (change: Invalidation) => void): void {
    this.listeners.push(listener)
  }

  private changed(change: Invalidation): void {
    for (const listener of this.listeners) listener(change)
  }

  async createTeam(team: Team): Promise<boolean> {
    if (this.teams.has(team.id)) return false
    this.teams.set(team.id, structuredClone(team))
    return true
  }

  async getTeam(id: string): Promise<Team | null> {
    const team = this.teams.get(id)
    return team ? structuredClone(team) : null
  }

  async listTeams(): Promise<Team[]> {
    return [...this.teams.values()].map((t) => structuredClone(t)).sort((a, b) => a.id.localeCompare(b.id))
  }

  async updateTeam(id: string, patch: TeamPatch, now: string): Promise<Team | null> {
    const team = this.teams.get(id)
    if (!team) return null
    const next: Team = {
      ...team,
      ...(patch.name !== undefined ? { name: patch.name } : {}),
      ...(patch.limits !== undefined ? { limits: { ...patch.limits } } : {}),
      ...(patch.model_limits !== undefined ? { model_limits: structuredClone(patch.model_limits) } : {}),
      ...(patch.allowed_models !== undefined ? { allowed_models: structuredClone(patch.allowed_models) } : {}),
      ...(patch.end_user_limits !== undefined ? { end_user_limits: { ...patch.end_user_limits } } : {}),
      updated_at: now,
    }
    this.teams.set(id, next)
    this.changed({ kind: 'team', id })
    return structuredClone(next)
  }

  async deleteTeam(id: string): Promise<boolean> {
    if (!this.teams.delete(id)) return false
    for (const key of [...this.keys.values()]) {
      if (key.team !== id) continue
      this.keys.delete(key.id)
      this.keyIdByHash.delete(key.hash)
    }
    this.changed({ kind: 'team', id })
    return true
  }

  async createKey(key: ApiKeyRecord): Promise<boolean> {
    if (!this.teams.has(key.team)) return false
    this.keys.set(key.id, structuredClone(key))
    this.keyIdByHash.set(key.hash, key.id)
    return true
  }

  async authenticate(hash: string): Promise<Principal | null> {
    const id = this.keyIdByHash.get(hash)
    const key = id === undefined ? undefined : this.keys.get(id)
    const team = key ? this.teams.get(key.team) : undefined
    return key && team && key.revoked_at === null ? { key: structuredClone(key), team: structuredClone(team) } : null
  }

  async getKey(id: string): Promise<ApiKeyRecord | null> {
    const key = this.keys.get(id)
    return key ? structuredClone(key) : null
  }

  async updateKey(id: string, patch: KeyPatch): Promise<ApiKeyRecord | null> {
    const key = this.keys.get(id)
    if (!key) return null
    if (patch.name !== undefined) key.name = patch.name
    if (patch.limits !== undefined) key.limits = { ...patch.limits }
    if (patch.allowed_models !== undefined) key.allowed_models = structuredClone(patch.allowed_models)
    if (patch.expires_at !== undefined) key.expires_at = patch.expires_at
    if (patch.replaced_by !== undefined) key.replaced_by = patch.replaced_by
    this.changed({ kind: 'key', id })
    return structuredClone(key)
  }

  async touchKeys(lastUsed: Map<string, string>): Promise<void> {
    for (const [id, at] of lastUsed) {
      const key = this.keys.get(id)
      if (key) key.last_used_at = at
    }
  }

  async listKeys(team: string): Promise<ApiKeyRecord[]> {
    return [...this.keys.values()]
      .filter((k) => k.team === team)
      .map((k) => structuredClone(k))
      .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id))
  }

  async revokeKey(id: string, now: string): Promise<boolean> {
    const key = this.keys.get(id)
    if (!key) return false
    this.keyIdByHash.delete(key.hash)
    if (key.revoked_at === null) key.revoked_at = now
    this.changed({ kind: 'key', id })
    return true
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}
}
