import { LRUCache } from 'lru-cache'
import type { Principal } from './types.js'

/**
 * Authenticated keys, cached in-process so most requests need no store lookup at all. Entries are
 * fresh for `ttlMs`; every change to a key or team is broadcast (Redis pub/sub, see
 * store/redis.ts) and drops the affected entries at once on every instance, so revocation still
 * takes effect at once. Fail-open keeps using stale entries while the store is away. A change that
 * may have been missed (pub/sub reconnected) makes every entry stale, not gone: the next request
 * looks its key up again, and if the store is still away, fail-open can still serve it. Bounded: the
 * least recently used entries go first (lru-cache: a hit moves an index, where the hand-made LRU
 * deleted and re-added a Map entry on every request, and the Map rebuilt its table every few).
 */
export class PrincipalCache {
  private readonly entries: LRUCache<string, { principal: Principal; at: number; round: number }>
  /** Bumped by every invalidation: a lookup that started before one must not be cached. */
  private generation = 0
  /** Bumped by an invalidation of everything: entries cached in an earlier round are stale. */
  private round = 0

  constructor(
    private readonly ttlMs = 10_000,
    max = 50_000,
  ) {
    this.entries = new LRUCache({ max })
  }

  get epoch(): number {
    return this.generation
  }

  /** A fresh entry, or with `stale` any entry however old. */
  get(hash: string, now: number, stale = false): Principal | undefined {
    const entry = this.entries.get(hash)
    if (!entry) return undefined
    if (!stale && (entry.round !== this.round || now - entry.at > this.ttlMs)) return undefined
    return entry.principal
  }

  /** Caches a lookup's result, unless an invalidation came since the lookup began (`epoch`). */
  set(hash: string, principal: Principal, now: number, epoch: number): void {
    if (epoch !== this.generation) return
    this.entries.set(hash, { principal, at: now, round: this.round })
  }

  delete(hash: string): void {
    this.entries.delete(hash)
  }

  /** A key or a team changed somewhere: forget what depends on it. */
  invalidate(change: Invalidation): void {
    this.generation++
    if (change.kind === 'all') {
      this.round++
      return
    }
    const gone: string[] = []
    for (const [hash, { principal }] of this.entries.entries()) {
      if (change.kind === 'key' ? principal.key.id === change.id : principal.team.id === change.id) gone.push(hash)
    }
    for (const hash of gone) this.entries.delete(hash)
  }
}

export type Invalidation = { kind: 'key'; id: string } | { kind: 'team'; id: string } | { kind: 'all' }
