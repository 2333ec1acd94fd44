import type { FastifyBaseLogger } from 'fastify'
import type { Store } from './types.js'

/**
 * `last_used_at` without a store write per request: uses are noted in memory and written in one
 * batch every interval (and at shutdown). A failed write is kept for the next batch.
 */
export class KeyActivity {
  /** Key id -> last use (epoch ms); turned into ISO strings only when written. */
  private pending = new Map<string, number>()
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly store: Store,
    private readonly log: FastifyBaseLogger,
    intervalMs = 30_000,
  ) {
    this.timer = setInterval(() => void this.flush(), intervalMs)
    this.timer.unref()
  }

  used(keyId: string, at: number): void {
    this.pending.set(keyId, at)
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return
    const batch = this.pending
    this.pending = new Map()
    try {
      await this.store.touchKeys(new Map([...batch].map(([id, at]) => [id, new Date(at).toISOString()])))
    } catch (err) {
      for (const [id, at] of batch) if (!this.pending.has(id)) this.pending.set(id, at)
      this.log.warn({ err: (err as Error).message, keys: batch.size }, 'could not record when keys were last used; will retry')
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.flush()
  }
}
