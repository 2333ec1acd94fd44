import type { AllowedModels } from '../access.js'
import type { Limits } from '../limits.js'
import type { Invalidation } from './principal-cache.js'

/**
 * The store contract: teams and client keys. Two implementations pass one contract suite:
 * MemoryStore (embedded, per process) and RedisStore (shared by every gateway instance).
 * Every write is atomic: a failed or refused write leaves nothing half-written.
 */

export interface Team {
  id: string
  name: string
  limits: Limits
  /** Narrower limits for single models within the team, by model name. */
  model_limits: Record<string, Limits>
  /** The models its keys may use (names and patterns: access.ts); null: every model. */
  allowed_models: AllowedModels
  /** Limits that hold for each end user of the team (a request's `safety_identifier` or `user`) on its own. */
  end_user_limits: Limits
  created_at: string
  updated_at: string
}

export interface ApiKeyRecord {
  id: string
  team: string
  name: string | null
  /** SHA-256 hex of the plaintext key; the plaintext is never stored. */
  hash: string
  /** `tg-AbCd…wxYz`, for people to tell keys apart. */
  hint: string
  /** Narrower limits for this key within its team. */
  limits: Limits
  /** The models this key may use, within its team's (access.ts); null: all its team's. */
  allowed_models: AllowedModels
  created_at: string
  expires_at: string | null
  revoked_at: string | null
  /** When a request last used it (written in batches, so up to a minute behind). */
  last_used_at: string | null
  /** The key that replaced this one in a rotation; this one works until its expires_at. */
  replaced_by: string | null
}

export interface TeamPatch {
  name?: string
  limits?: Limits
  model_limits?: Record<string, Limits>
  allowed_models?: AllowedModels
  end_user_limits?: Limits
}

export interface KeyPatch {
  name?: string | null
  limits?: Limits
  allowed_models?: AllowedModels
  expires_at?: string | null
  replaced_by?: string | null
}

/** What authentication needs: the active key and its team, read together. */
export interface Principal {
  key: ApiKeyRecord
  team: Team
}

export interface Store {
  readonly kind: 'memory' | 'redis'
  /** false when a team with that id exists. */
  createTeam(team: Team): Promise<boolean>
  getTeam(id: string): Promise<Team | null>
  listTeams(): Promise<Team[]>
  /** null when there is no such team. */
  updateTeam(id: string, patch: TeamPatch, now: string): Promise<Team | null>
  /** Deletes the team and every key of it; false when there was no such team. */
  deleteTeam(id: string): Promise<boolean>
  /** false when the team does not exist (any more). */
  createKey(key: ApiKeyRecord): Promise<boolean>
  /** The key with this hash and its team, if the key exists and is not revoked. One round trip. */
  authenticate(hash: string): Promise<Principal | null>
  getKey(id: string): Promise<ApiKeyRecord | null>
  /** null when there is no such key. */
  updateKey(id: string, patch: KeyPatch): Promise<ApiKeyRecord | null>
  listKeys(team: string): Promise<ApiKeyRecord[]>
  /** Records when keys were last used (key id → ISO time); keys that are gone are skipped. */
  touchKeys(lastUsed: Map<string, string>): Promise<void>
  /** Revoked keys fail at once; false when there is no such key. Revoking twice is fine. */
  revokeKey(id: string, now: string): Promise<boolean>
  /**
   * Calls `listener` for every change to a key or team made by any instance (and with
   * `{kind: 'all'}` when changes may have been missed), so caches can drop what changed.
   */
  onChange(listener: (change: Invalidation) => void): void
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>
  close(): Promise<void>
}
