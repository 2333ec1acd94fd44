import type { RedisClient } from '../redis/connection.js'
import { RedisKeys } from '../redis/keys.js'

/**
 * Who sends an alert: the first instance to claim it. A claim is named by what crossed which share
 * of which limit in which period, and lasts past the period's end, so each alert goes once however
 * many instances see the crossing.
 */
export interface AlertClaims {
  /** True for the one caller that claims `id` first (within its team), false for every other. */
  claim(team: string, id: string, ttlMs: number): Promise<boolean>
}

/** Claims in Redis, shared by every instance: SET NX on a key under the team's hash tag. */
export class RedisAlertClaims implements AlertClaims {
  private readonly keys: RedisKeys

  constructor(
    private readonly client: RedisClient,
    prefix?: string,
  ) {
    this.keys = new RedisKeys(prefix)
  }

  async claim(team: string, id: string, ttlMs: number): Promise<boolean> {
    return (await this.client.set(this.keys.team(team, `alert:${id}`), '1', 'PX', ttlMs, 'NX')) === 'OK'
  }
}

/** Claims in this process (the embedded store: one instance). */
export class MemoryAlertClaims implements AlertClaims {
  private readonly until = new Map<string, number>()

  constructor(private readonly now: () => number = Date.now) {}

  async claim(team: string, id: string, ttlMs: number): Promise<boolean> {
    const key = `${team}\t${id}`
    const now = this.now()
    const held = this.until.get(key)
    if (held !== undefined && held > now) return false
    this.until.set(key, now + ttlMs)
    // Claims of periods that have ended go (a few per team and period: checked as claims are made).
    if (this.until.size > 10_000) for (const [k, t] of this.until) if (t <= now) this.until.delete(k)
    return true
  }
}
