import type { Principal } from './types.js'

/**
 * The last principal seen for each key hash, so that while Redis is away (fail-open) keys this
 * instance has served keep working. Bounded: the least recently used entries go first.
 */
export class PrincipalCache {
  private readonly entries = new Map<string, Principal>()

  constructor(private readonly max = 10_000) {}

  set(hash: string, principal: Principal): void {
    this.entries.delete(hash)
    this.entries.set(hash, principal)
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!)
  }

  get(hash: string): Principal | undefined {
    const principal = this.entries.get(hash)
    if (principal) {
      this.entries.delete(hash)
      this.entries.set(hash, principal)
    }
    return principal
  }

  delete(hash: string): void {
    this.entries.delete(hash)
  }
}
