import type { FastifyBaseLogger } from 'fastify'
import { LEASE_MS, type QuotaEngine, type Ticket } from './types.js'

/**
 * Keeps the leases of this instance's requests in flight alive: one batched renewal every third
 * of a lease. An instance that dies stops renewing, and its slots come free within a lease.
 */
export class LeaseKeeper {
  private readonly tickets = new Map<string, Ticket>()
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly quotas: QuotaEngine,
    private readonly now: () => number,
    private readonly log: FastifyBaseLogger,
    intervalMs = LEASE_MS / 3,
  ) {
    this.timer = setInterval(() => void this.renew(), intervalMs)
    this.timer.unref()
  }

  add(ticket: Ticket): void {
    this.tickets.set(ticket.requestId, ticket)
  }

  remove(ticket: Ticket): void {
    this.tickets.delete(ticket.requestId)
  }

  get size(): number {
    return this.tickets.size
  }

  async renew(): Promise<void> {
    if (this.tickets.size === 0) return
    try {
      await this.quotas.renew([...this.tickets.values()], this.now())
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not renew concurrency leases')
    }
  }

  close(): void {
    clearInterval(this.timer)
  }
}
