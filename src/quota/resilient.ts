import type { FastifyBaseLogger } from 'fastify'
import { MemoryQuotas } from './memory.js'
import type {
  Admission,
  AdmitResult,
  AuditEntry,
  QuotaEngine,
  Scope,
  ScopeStatus,
  Settlement,
  Ticket,
  UsageQuery,
  UsageRow,
} from './types.js'

/**
 * Quotas that outlive a Redis outage. Fail-open (the default): while Redis is away, admissions
 * are decided by per-instance limits in memory, and every settlement that Redis missed waits in a
 * bounded buffer, written when Redis is back (anything dropped past the bound is counted and
 * logged). Fail-closed: admissions fail, and the gateway answers 503. In either mode the audit
 * entries Redis missed wait the same way, in a buffer of their own.
 */

export type FailureMode = 'open' | 'closed'

/** Buffered audit entries written per script call once Redis is back (the live batches' size). */
const AUDIT_FLUSH_BATCH = 64
/** A full buffer drops a record per request: it says so at most this often, with the count so far. */
const DROP_LOG_MS = 10_000

/**
 * What waits for Redis, oldest first, bounded: past `max` the oldest go, counted, and logged at
 * most every DROP_LOG_MS (the count is exact on /metrics and /readyz). The oldest are taken from
 * a moving start, not by shifting the array: a full buffer drops one per request, and shifting
 * 100,000 entries took about 20 µs each time.
 */
export class Backlog<T> {
  private items: T[] = []
  /** Where the records still waiting begin in `items`. */
  private head = 0
  dropped = 0
  private loggedAt = Number.NEGATIVE_INFINITY

  constructor(
    private readonly max: number,
    private readonly log: FastifyBaseLogger,
    private readonly what: string,
    private readonly now: () => number = Date.now,
  ) {}

  get length(): number {
    return this.items.length - this.head
  }

  /** What waits, oldest first (a copy). */
  all(): T[] {
    return this.items.slice(this.head)
  }

  /** The oldest record, left in place. */
  peek(): T | undefined {
    return this.items[this.head]
  }

  /** New records, behind what waits. */
  push(item: T): void {
    this.items.push(item)
    this.bound()
  }

  /** Records older than what waits (a write of them failed): in front. */
  pushFront(records: T[]): void {
    this.items = records.concat(this.all())
    this.head = 0
    this.bound()
  }

  /** Takes out up to `n` of the oldest. */
  take(n: number): T[] {
    const out = this.items.slice(this.head, this.head + n)
    this.advance(out.length)
    return out
  }

  /** Takes out a record written meanwhile, if it is still here (a bound may have dropped it). */
  remove(record: T): void {
    if (this.items[this.head] === record) return this.advance(1)
    const at = this.items.indexOf(record, this.head)
    if (at >= 0) this.items.splice(at, 1)
  }

  private advance(n: number): void {
    this.head += n
    if (this.head >= this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      // What is gone is let go of once it is most of the array.
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }

  private bound(): void {
    const over = this.length - this.max
    if (over <= 0) return
    this.advance(over)
    this.dropped += over
    if (this.now() - this.loggedAt < DROP_LOG_MS) return
    this.loggedAt = this.now()
    this.log.error({ dropped_total: this.dropped, buffer_max: this.max }, `${this.what} buffer full: the oldest are dropped`)
  }
}

export interface ResilientQuotasOptions {
  primary: QuotaEngine
  /** Whether Redis is connected right now. */
  up: () => boolean
  mode: FailureMode
  bufferMax: number
  log: FastifyBaseLogger
}

export class ResilientQuotas implements QuotaEngine {
  private readonly local = new MemoryQuotas()
  /** Requests admitted in memory while Redis was away. */
  private readonly localTickets = new Set<string>()
  /** Settlements Redis missed, and audit entries: each written in order once it is back. */
  private readonly buffer: Backlog<Settlement>
  private readonly auditBuffer: Backlog<AuditEntry>
  private flushing: Promise<void> | null = null
  /** Admissions decided by this instance's own limits because Redis was away or failed (fail-open). */
  localAdmissions = 0
  private readonly timer: NodeJS.Timeout

  constructor(private readonly o: ResilientQuotasOptions) {
    this.buffer = new Backlog(o.bufferMax, o.log, 'usage')
    this.auditBuffer = new Backlog(o.bufferMax, o.log, 'audit')
    // Besides Redis's 'ready' event, retry now and then: a write can fail just after a reconnect
    // (Redis still loading its data, say).
    this.timer = setInterval(() => {
      if ((this.buffer.length > 0 || this.auditBuffer.length > 0) && this.o.up()) void this.flush()
    }, 1_000)
    this.timer.unref()
    o.primary.onAuditFailed?.((entries) => {
      if (this.auditBuffer.length === 0)
        this.o.log.warn({ entries: entries.length }, 'could not write the audit stream; keeping its entries until redis is back')
      this.auditBuffer.pushFront(entries)
    })
  }

  close(): void {
    clearInterval(this.timer)
  }

  /** Each buffer: what waits in it now, and what it dropped past its bound since start. */
  backlogs(): Record<'usage' | 'audit', { waiting: number; dropped: number }> {
    return {
      usage: { waiting: this.buffer.length, dropped: this.buffer.dropped },
      audit: { waiting: this.auditBuffer.length, dropped: this.auditBuffer.dropped },
    }
  }

  async admit(a: Admission): Promise<AdmitResult> {
    if (this.o.up()) {
      try {
        return await this.o.primary.admit(a)
      } catch (err) {
        if (this.o.mode === 'closed') throw err
        this.o.log.warn({ err: (err as Error).message }, 'redis failed during admission; admitting from per-instance limits')
      }
    } else if (this.o.mode === 'closed') {
      throw new Error('redis is down and the failure mode is closed')
    }
    this.localAdmissions++
    const result = await this.local.admit(a)
    if (result.ok) this.localTickets.add(a.requestId)
    return result
  }

  async settle(s: Settlement): Promise<void> {
    const local = this.localTickets.delete(s.ticket.requestId)
    if (local) {
      await this.local.settle(s)
      // Redis never saw this request: it settles there with nothing reserved, only the usage.
      this.buffer.push({ ...s, ticket: { ...s.ticket, tokens: 0 } })
      return
    }
    if (this.buffer.length > 0 || !this.o.up()) {
      this.buffer.push(s) // keep the order: nothing overtakes what is already waiting
      return
    }
    try {
      await this.o.primary.settle(s)
    } catch (err) {
      if (this.buffer.length === 0)
        this.o.log.warn({ err: (err as Error).message }, 'could not record usage in redis; buffering it until it can')
      this.buffer.push(s)
    }
  }

  /** Writes what waited while Redis was away, in order: usage, then audit entries. Safe to call at any time. */
  flush(): Promise<void> {
    this.flushing ??= (async () => {
      let written = 0
      while (this.buffer.length > 0 && this.o.up()) {
        // Left in the buffer while written, so that settlements made meanwhile still go behind it;
        // then taken out by identity (a bound reached meanwhile may have dropped it already).
        const next = this.buffer.peek()!
        try {
          await this.o.primary.settle(next)
        } catch (err) {
          this.o.log.warn({ err: (err as Error).message, waiting: this.buffer.length }, 'could not write buffered usage yet')
          break
        }
        this.buffer.remove(next)
        written++
      }
      if (written > 0) this.o.log.info({ written, waiting: this.buffer.length }, 'buffered usage written to redis')
      let audited = 0
      const append = this.o.primary.appendAudit?.bind(this.o.primary)
      while (append && this.buffer.length === 0 && this.auditBuffer.length > 0 && this.o.up()) {
        // Taken out while written, and put back in front if the write fails. (Entries made
        // meanwhile may go out ahead of these: each carries its own time.)
        const batch = this.auditBuffer.take(AUDIT_FLUSH_BATCH)
        try {
          await append(batch)
        } catch (err) {
          this.auditBuffer.pushFront(batch)
          this.o.log.warn({ err: (err as Error).message, waiting: this.auditBuffer.length }, 'could not write buffered audit entries yet')
          break
        }
        audited += batch.length
      }
      if (audited > 0) this.o.log.info({ written: audited, waiting: this.auditBuffer.length }, 'buffered audit entries written to redis')
    })().finally(() => {
      this.flushing = null
    })
    return this.flushing
  }

  async renew(tickets: Ticket[], now: number): Promise<void> {
    const local = tickets.filter((t) => this.localTickets.has(t.requestId))
    const remote = tickets.filter((t) => !this.localTickets.has(t.requestId))
    await this.local.renew(local, now)
    if (remote.length > 0 && this.o.up()) await this.o.primary.renew(remote, now)
  }

  status(team: string, scopes: Scope[], now: number): Promise<Record<string, ScopeStatus>> {
    return this.o.primary.status(team, scopes, now)
  }

  usage(query: UsageQuery): Promise<UsageRow[]> {
    return this.o.primary.usage(query)
  }

  /** Never rejects: an entry Redis cannot take now waits (auditBuffer). */
  async audit(entry: AuditEntry): Promise<void> {
    // Nothing overtakes what is already waiting.
    if (this.auditBuffer.length > 0 || !this.o.up()) return this.auditBuffer.push(entry)
    await this.o.primary.audit(entry)
  }

  async writeAudit(): Promise<void> {
    await this.o.primary.writeAudit?.()
  }

  /** At shutdown, if Redis is there (what it does not get only stays longer there: RedisQuotas). */
  async shutdown(): Promise<void> {
    if (!this.o.up()) return
    await this.o.primary
      .shutdown?.()
      .catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'could not tidy the settled sets at shutdown'))
  }
}
