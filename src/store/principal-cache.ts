import type { Principal } from './types.js'

/**
 * Authenticated keys, cached in-process so most requests need no store lookup at all. Entries are
 * fresh for `ttlMs`; every change to a key or team is broadcast (Redis pub/sub, see
 * store/redis.ts) and drops the affected entries at once on every instance, so revocation still
 * takes effect at once. Fail-open keeps using stale entries while the store is away. Bounded: the
 * least recently used entries go first.
 */
export class PrincipalCache {
  private readonly entries = new Map<string, { principal: Principal; at: number }>()
  /** Bumped by every invalidation: a lookup that started before one must not be cached. */
  private generation = 0

  constructor(
    private readonly ttlMs = 10_000,
    private readonly max = 50_000,
  ) {}

  get epoch(): number {
    return this.generation
  }

  /** A fresh entry, or with `stale` any entry however old. */
  get(hash: string, now: number, stale = false): Principal | undefined {
    const entry = this.entries.get(hash)
    if (!entry) return undefined
    if (!stale && now - entry.at > this.ttlMs) return undefined
    this.entries.delete(hash)
    this.entries.set(hash, entry)
    return entry.principal
  }

  /** Caches a lookup's result, unless an invalidation came since the lookup began (`epoch`). */
  set(hash: string, principal: Principal, now: number, epoch: number): void {
    if (epoch !== this.generation) return
    this.entries.delete(hash)
    this.entries.set(hash, { principal, at: now })
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!)
  }

  delete(hash: string): void {
    this.entries.delete(hash)
  }

  /** A key or a team changed somewhere: forget what depends on it. */
  invalidate(change: Invalidation): void {
    this.generation++
    if (change.kind === 'all') {
      this.entries.clear()
      return
    }
    for (const [hash, { principal }] of this.entries) {
      if (change.kind === 'key' ? principal.key.id === change.id : principal.team.id === change.id) this.entries.delete(hash)
    }
  }
}

export type Invalidation = { kind: 'key'; id: string } | { kind: 'team'; id: string } | { kind: 'all' }
