import type { FastifyBaseLogger } from 'fastify'
import { Backlog } from '../redis/backlog.js'
import type { RedisAudit } from './redis.js'
import type { AuditEntry, AuditLog } from './types.js'

/** Buffered entries written per script call once Redis is back (the live batches' size). */
const RESEND_BATCH = 64

export interface ResilientAuditOptions {
  primary: RedisAudit
  /** Whether Redis is connected right now. */
  up: () => boolean
  bufferMax: number
  log: FastifyBaseLogger
}

/**
 * An audit trail that outlives a Redis outage: entries Redis misses (it is away, or a batch's write
 * fails) wait in a bounded buffer and are written, oldest first, once it is back. Past the bound the
 * oldest go, counted. Writes never reject.
 */
export class ResilientAudit implements AuditLog {
  private readonly buffer: Backlog<AuditEntry>
  private resending: Promise<void> | null = null
  private readonly timer: NodeJS.Timeout

  constructor(private readonly o: ResilientAuditOptions) {
    this.buffer = new Backlog(o.bufferMax, o.log, 'audit')
    o.primary.onFailed((entries) => {
      if (this.buffer.length === 0)
        o.log.warn({ entries: entries.length }, 'could not write the audit stream; keeping its entries until redis is back')
      this.buffer.pushFront(entries)
    })
    this.timer = this.buffer.retryEvery(o.up, () => this.resend())
  }

  close(): void {
    clearInterval(this.timer)
  }

  /** What waits in the buffer now, and what it dropped past its bound since start. */
  backlog(): { waiting: number; dropped: number } {
    return this.buffer.state
  }

  async write(entry: AuditEntry): Promise<void> {
    // Nothing overtakes what is already waiting.
    if (this.buffer.length > 0 || !this.o.up()) return this.buffer.push(entry)
    await this.o.primary.write(entry)
  }

  flush(): Promise<void> {
    return this.o.primary.flush()
  }

  /** Writes what waited while Redis was away. Safe to call at any time. */
  resend(): Promise<void> {
    this.resending ??= (async () => {
      let written = 0
      while (this.buffer.length > 0 && this.o.up()) {
        // Taken out while written, and put back in front if the write fails. (Entries made
        // meanwhile may go out ahead of these: each carries its own time.)
        const batch = this.buffer.take(RESEND_BATCH)
        try {
          await this.o.primary.append(batch)
        } catch (err) {
          this.buffer.pushFront(batch)
          this.o.log.warn({ err: (err as Error).message, waiting: this.buffer.length }, 'could not write buffered audit entries yet')
          break
        }
        written += batch.length
      }
      if (written > 0) this.o.log.info({ written, waiting: this.buffer.length }, 'buffered audit entries written to redis')
    })().finally(() => {
      this.resending = null
    })
    return this.resending
  }
}
