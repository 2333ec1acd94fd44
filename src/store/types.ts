import type { Limits } from '../limits.js'

/**
 * The store contract: teams and client keys. Two implementations pass one contract suite:
 * MemoryStore (embedded, per process) and RedisStore (shared by every gateway instance).
 * Every write is atomic: a failed or refused write leaves nothing half-written.
 */

export interface Team {
  id: string
  name: string
  limits: Limits
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
  created_at: string
  expires_at: string | null
  revoked_at: string | null
}

export interface TeamPatch {
  name?: string
  limits?: Limits
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
  /** The key with this hash if it exists and is not revoked. */
  findKeyByHash(hash: string): Promise<ApiKeyRecord | null>
  getKey(id: string): Promise<ApiKeyRecord | null>
  listKeys(team: string): Promise<ApiKeyRecord[]>
  /** Revoked keys fail at once; false when there is no such key. Revoking twice is fine. */
  revokeKey(id: string, now: string): Promise<boolean>
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>
  close(): Promise<void>
}
