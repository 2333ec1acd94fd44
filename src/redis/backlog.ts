import type { FastifyBaseLogger } from 'fastify'

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

  /** What waits now, and what was dropped past the bound since start. */
  get state(): { waiting: number; dropped: number } {
    return { waiting: this.length, dropped: this.dropped }
  }

  /**
   * Calls `write` every second while something waits and Redis is up: besides Redis's 'ready'
   * event, as a write can fail just after a reconnect (Redis still loading its data, say). The
   * timer does not keep the process alive; clear it at shutdown.
   */
  retryEvery(up: () => boolean, write: () => Promise<void>): NodeJS.Timeout {
    const timer = setInterval(() => {
      if (this.length > 0 && up()) void write()
    }, 1_000)
    timer.unref()
    return timer
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
