import type { Arg, LuaScript } from './scripts.js'

interface Waiter {
  resolve: (reply: unknown) => void
  reject: (err: unknown) => void
}
/**
 * What the calls of one batch write their keys and arguments into while they wait, and what makes
 * the script's KEYS and ARGV of them: a batch may send what its calls share once (quota/redis.ts).
 */
export interface CallSink {
  encode(calls: number): { keys: string[]; args: Arg[] }
}

interface Batch<S extends CallSink> {
  sink: S
  waiters: Waiter[]
  /** Marks this batch answered (or failed). */
  finish: () => void
}
interface Group<S extends CallSink> {
  inFlight: number
  next: Batch<S> | null
  /** Resolves once the newest batch and every batch before it are answered; null when all are (none in flight or waiting). */
  tail: Promise<void> | null
}

/**
 * Calls of a script that takes many calls at once (it answers one reply per call, in order),
 * grouped by team: a batch may hold the keys of one Redis Cluster slot only, and each team's keys
 * share a hash tag. Each batch writes into a new sink made by `sink`.
 *
 * Group commit: a call made while no call of its team is in flight goes out at once, alone, so at
 * low load nothing waits. Calls made while one is in flight wait for its answer and then go out
 * together, as one script call, in the order they came (a full batch goes at once). Under load one
 * script call then carries many requests: each costs the gateway and Redis a command, a write, a
 * read and a reply less.
 */
export class BatchedScript<S extends CallSink> {
  private readonly groups = new Map<string, Group<S>>()

  constructor(
    private readonly script: LuaScript,
    private readonly sink: () => S,
    private readonly maxBatch = 64,
  ) {}

  /** Adds one call to its team's batch: `fill` writes its keys and arguments. Resolves with its own reply. */
  call(group: string, fill: (sink: S) => void): Promise<unknown> {
    let g = this.groups.get(group)
    if (g === undefined) {
      g = { inFlight: 0, next: null, tail: null }
      this.groups.set(group, g)
    }
    const batch = g.next ?? this.open(g)
    fill(batch.sink)
    const reply = new Promise<unknown>((resolve, reject) => batch.waiters.push({ resolve, reject }))
    if (g.inFlight === 0 || batch.waiters.length >= this.maxBatch) this.send(g)
    return reply
  }

  /**
   * Resolves once every call of the group made so far has its answer (or failed), or null if none
   * is waiting: a caller that must not overtake them (an admission, behind its team's settlements)
   * waits on it. Costs nothing per call: the promise is made per batch.
   */
  pending(group: string): Promise<void> | null {
    return this.groups.get(group)?.tail ?? null
  }

  /** Resolves once every call made so far, of every group, has its answer (or failed). */
  async drained(): Promise<void> {
    await Promise.all([...this.groups.values()].map((g) => g.tail))
  }

  /** A new batch, the group's next; its end waits for those before it. */
  private open(g: Group<S>): Batch<S> {
    let finish!: () => void
    const answered = new Promise<void>((resolve) => (finish = resolve))
    g.tail = g.tail === null ? answered : g.tail.then(() => answered)
    g.next = { sink: this.sink(), waiters: [], finish }
    return g.next
  }

  private send(g: Group<S>): void {
    const batch = g.next!
    g.next = null
    g.inFlight++
    const { keys, args } = batch.sink.encode(batch.waiters.length)
    this.script.run(keys, args).then(
      (replies) => {
        const list = replies as unknown[]
        for (let i = 0; i < batch.waiters.length; i++) batch.waiters[i]!.resolve(list[i])
        this.done(g, batch)
      },
      (err: unknown) => {
        for (const w of batch.waiters) w.reject(err)
        this.done(g, batch)
      },
    )
  }

  private done(g: Group<S>, batch: Batch<S>): void {
    batch.finish()
    if (--g.inFlight > 0) return
    if (g.next !== null) this.send(g)
    else g.tail = null
    // An idle team's entry stays (one small object per team this instance has served): a Map that
    // gains and loses entries under load keeps garbage alive through young collections (quota/leases.ts).
  }
}
