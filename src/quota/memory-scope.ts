import { refill } from './status.js'
import { MINUTE_MS } from './types.js'

/**
 * What the memory engine (memory.ts) counts for one scope of a team: its minute's request log, its
 * token bucket, its day and month counters, and its leases, each step of constant cost.
 */

/** One request in flight in one scope: a link in the scope's list of leases. */
export interface Lease {
  requestId: string
  tokens: number
  expires: number
  /** The scope whose list holds it; null once it has left (settled or lapsed). */
  scope: ScopeState | null
  prev: Lease | null
  next: Lease | null
}

/** All a scope of a team counts. */
export class ScopeState {
  /** Admission times of the last minute, oldest first, from `start` on (what is before it has left the window). */
  times: number[] = []
  start = 0
  /** The token bucket: its level at `bucketTs`; NaN before the first use (a full bucket). */
  level = Number.NaN
  bucketTs = 0
  /** Leases in order of expiry. */
  first: Lease | null = null
  last: Lease | null = null
  inflight = 0
  reserved = 0
  /** Tokens used per UTC day and month (YYYY-MM-DD, YYYY-MM). */
  readonly days = new Map<string, number>()
  readonly months = new Map<string, number>()

  /** The minute up to `now`: drops what has left it and answers how many remain. */
  window(now: number): number {
    const times = this.times
    let start = this.start
    while (start < times.length && times[start]! <= now - MINUTE_MS) start++
    if (start > 64 && start * 2 > times.length) {
      times.copyWithin(0, start)
      times.length -= start
      start = 0
    }
    this.start = start
    return times.length - start
  }

  oldest(): number | undefined {
    return this.times[this.start]
  }

  record(now: number): void {
    const times = this.times
    let i = times.length
    times.push(now)
    // Kept in order even if a clock steps back: slide the new time into place from the end.
    while (i > this.start && times[i - 1]! > now) {
      times[i] = times[i - 1]!
      times[--i] = now
    }
  }

  /** The bucket's level at `now`, refilled (and kept as of now: refilling is linear up to the cap). */
  bucket(limit: number, now: number): number {
    this.level = Number.isNaN(this.level) ? limit : refill(this.level, this.bucketTs, limit, now)
    this.bucketTs = now
    return this.level
  }

  /** Lets the leases lapse that expire by `now`. */
  lapse(now: number): void {
    while (this.first !== null && this.first.expires <= now) this.unlink(this.first)
  }

  /** Puts a lease in its place by expiry: at the end, unless a clock stepped back. */
  link(lease: Lease): void {
    let after = this.last
    while (after !== null && after.expires > lease.expires) after = after.prev
    lease.scope = this
    lease.prev = after
    lease.next = after === null ? this.first : after.next
    if (lease.next !== null) lease.next.prev = lease
    else this.last = lease
    if (after !== null) after.next = lease
    else this.first = lease
    this.inflight++
    this.reserved += lease.tokens
  }

  /** Takes a lease out; it drops its pointers, so a lease kept by a ticket holds no others alive. */
  unlink(lease: Lease): void {
    if (lease.prev !== null) lease.prev.next = lease.next
    else this.first = lease.next
    if (lease.next !== null) lease.next.prev = lease.prev
    else this.last = lease.prev
    lease.scope = lease.prev = lease.next = null
    this.inflight--
    this.reserved -= lease.tokens
  }

  /** A lease of an admitted request, found by its id (for a ticket that does not hold its leases). */
  find(requestId: string): Lease | null {
    for (let l = this.first; l !== null; l = l.next) if (l.requestId === requestId) return l
    return null
  }
}
