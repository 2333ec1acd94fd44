import type { FastifyBaseLogger } from 'fastify'
import { Backlog } from '../redis/backlog.js'
import { MemoryQuotas } from './memory.js'
import type { Admission, AdmitResult, QuotaEngine, Scope, ScopeStatus, Settlement, Ticket, UsageQuery, UsageRow } from './types.js'

/**
 * Quotas that outlive a Redis outage. Fail-open (the default): while Redis is away, admissions
 * are decided by per-instance limits in memory, and every settlement that Redis missed waits in a
 * bounded buffer, written when Redis is back (anything dropped past the bound is counted and
 * logged). Fail-closed: admissions fail, and the gateway answers 503. (The audit entries Redis
 * missed wait the same way: audit/resilient.ts.)
 */

export type FailureMode = 'open' | 'closed'

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
  /** Settlements Redis missed, written in order once it is back. */
  private readonly buffer: Backlog<Settlement>
  private flushing: Promise<void> | null = null
  /** Admissions decided by this instance's own limits because Redis was away or failed (fail-open). */
  localAdmissions = 0
  private readonly timer: NodeJS.Timeout

  constructor(private readonly o: ResilientQuotasOptions) {
    this.buffer = new Backlog(o.bufferMax, o.log, 'usage')
    this.timer = this.buffer.retryEvery(o.up, () => this.flush())
  }

  close(): void {
    clearInterval(this.timer)
  }

  /** What waits in the buffer now, and what it dropped past its bound since start. */
  backlog(): { waiting: number; dropped: number } {
    return this.buffer.state
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

  /** Writes what waited while Redis was away, in order. Safe to call at any time. */
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

  /** At shutdown, if Redis is there (what it does not get only stays longer there: RedisQuotas). */
  async shutdown(): Promise<void> {
    if (!this.o.up()) return
    await this.o.primary
      .shutdown?.()
      .catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'could not tidy the settled sets at shutdown'))
  }
}
