/**
 * What one instance has seen of its upstream keys' answers: the refusals that take a key out of
 * the rotation (key-pool.ts), and the last errors of each key (the console's upstream view).
 */

/**
 * What one instance has seen of its keys being refused (401/403) since each last worked. A 403 may
 * concern the model, not the key (NVIDIA refuses models a key is not entitled to), so a key is
 * judged refused only by a 401, or by 403s for two different models with no answer between.
 */
export class KeyRefusals {
  private readonly models = new Map<number, Set<string>>()

  /** Records a refusal; true when the key itself is refused and should leave the rotation. */
  refused(index: number, model: string, status: number): boolean {
    if (status === 401) return true
    const seen = this.models.get(index) ?? new Set<string>()
    seen.add(model)
    this.models.set(index, seen)
    return seen.size >= 2
  }

  /** The key was accepted: what it was refused before concerned the models. */
  accepted(index: number): void {
    if (this.models.size > 0) this.models.delete(index)
  }
}

/** An upstream error one instance saw with a key: when, the status, for which model. */
export interface KeyError {
  at: string
  status: number
  model: string
}

/** The last few errors this instance saw with each key of an upstream (the console's upstream view). */
export class KeyErrors {
  static readonly KEEP = 10
  private readonly byKey = new Map<number, KeyError[]>()

  record(index: number, error: KeyError): void {
    const list = this.byKey.get(index) ?? []
    list.unshift(error)
    if (list.length > KeyErrors.KEEP) list.length = KeyErrors.KEEP
    this.byKey.set(index, list)
  }

  /** Newest first. */
  of(index: number): readonly KeyError[] {
    return this.byKey.get(index) ?? []
  }
}
