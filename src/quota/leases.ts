import type { FastifyBaseLogger } from 'fastify'
import { LEASE_MS, type QuotaEngine, type Ticket } from './types.js'

/** A ticket held by the keeper: a link in its list. */
export interface Lease {
  ticket: Ticket | null
  prev: Lease | null
  next: Lease | null
}

/**
 * Keeps the leases of this instance's requests in flight alive: one batched renewal every third
 * of a lease. An instance that dies stops renewing, and its slots come free within a lease.
 *
 * The requests in flight are a linked list, not a Map: a Map that gains and loses an entry per
 * request rebuilds its table every few requests, and each table it leaves behind in the old
 * generation still points at the tickets in flight when it was left, which keeps them alive
 * through young-generation collections until the next full one. That was most of what the
 * gateway promoted per request, and doubled its GC pauses (bench/gc.ts). A
 * removed link drops its pointers for the same reason.
 */
export class LeaseKeeper {
  private head: Lease | null = null
  private count = 0
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

  add(ticket: Ticket): Lease {
    const lease: Lease = { ticket, prev: null, next: this.head }
    if (this.head !== null) this.head.prev = lease
    this.head = lease
    this.count++
    return lease
  }

  remove(lease: Lease): void {
    if (lease.ticket === null) return // removed before
    if (lease.prev !== null) lease.prev.next = lease.next
    else this.head = lease.next
    if (lease.next !== null) lease.next.prev = lease.prev
    lease.ticket = lease.prev = lease.next = null
    this.count--
  }

  get size(): number {
    return this.count
  }

  async renew(): Promise<void> {
    if (this.count === 0) return
    const tickets: Ticket[] = []
    for (let l = this.head; l !== null; l = l.next) tickets.push(l.ticket!)
    try {
      await this.quotas.renew(tickets, this.now())
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not renew concurrency leases')
    }
  }

  close(): void {
    clearInterval(this.timer)
  }
}
