import { hash, randomBytes } from 'node:crypto'
import type { RedisClient } from '../redis/connection.js'
import { RedisKeys } from '../redis/keys.js'

/**
 * Web console sessions. Signing in exchanges the admin token or a client key for a random session
 * id, sent to the browser as an HttpOnly cookie; the session is kept here under the id's SHA-256,
 * so what the store holds cannot be replayed as a cookie. In Redis every instance sees a session
 * at once, and signing out on one ends it on all.
 */
export interface ConsoleSession {
  role: 'admin' | 'team'
  /** The team a client key's session may see (null for the admin). */
  team: string | null
  /** The client key that signed in (null for the admin). */
  key_id: string | null
  /** The token every state-changing request must echo in `x-csrf-token`. */
  csrf: string
  /** For the admin: a digest of the admin token it signed in with, so a new token ends old sessions. */
  admin: string | null
  expires_at: number
}

export interface SessionStore {
  /** Keeps a session until `session.expires_at`; returns its id (the cookie's value). */
  create(session: ConsoleSession, now: number): Promise<string>
  /** The session of a cookie's id, if it exists and has not expired. */
  get(id: string, now: number): Promise<ConsoleSession | null>
  delete(id: string): Promise<void>
}

/** 32 random bytes, base64url: what a cookie carries. */
const newId = () => randomBytes(32).toString('base64url')
const digest = (id: string) => hash('sha256', id, 'base64url')
const ID = /^[A-Za-z0-9_-]{43}$/

export const newCsrfToken = () => randomBytes(24).toString('base64url')

/** Sessions of the embedded store (one instance). */
export class MemorySessions implements SessionStore {
  private readonly sessions = new Map<string, ConsoleSession>()

  async create(session: ConsoleSession, now: number): Promise<string> {
    // Expired sessions go as new ones are made, so the map stays as large as the live sessions.
    if (this.sessions.size >= 1_000) for (const [k, s] of this.sessions) if (s.expires_at <= now) this.sessions.delete(k)
    const id = newId()
    this.sessions.set(digest(id), session)
    return id
  }

  async get(id: string, now: number): Promise<ConsoleSession | null> {
    if (!ID.test(id)) return null
    const session = this.sessions.get(digest(id))
    return session && session.expires_at > now ? session : null
  }

  async delete(id: string): Promise<void> {
    if (ID.test(id)) this.sessions.delete(digest(id))
  }
}

/** Sessions in Redis, one key each, expiring with the session. */
export class RedisSessions implements SessionStore {
  private readonly keys: RedisKeys

  constructor(
    private readonly client: RedisClient,
    prefix?: string,
  ) {
    this.keys = new RedisKeys(prefix)
  }

  async create(session: ConsoleSession, now: number): Promise<string> {
    const id = newId()
    await this.client.set(this.keys.session(digest(id)), JSON.stringify(session), 'PX', Math.max(1, session.expires_at - now))
    return id
  }

  async get(id: string, now: number): Promise<ConsoleSession | null> {
    if (!ID.test(id)) return null
    const text = await this.client.get(this.keys.session(digest(id)))
    if (text === null) return null
    const session = JSON.parse(text) as ConsoleSession
    return session.expires_at > now ? session : null
  }

  async delete(id: string): Promise<void> {
    if (ID.test(id)) await this.client.del(this.keys.session(digest(id)))
  }
}
