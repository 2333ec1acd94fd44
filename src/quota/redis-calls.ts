import { LIMIT_NAMES, type LimitName, type Limits } from '../limits.js'
import type { CallSink } from '../redis/batch.js'
import type { Arg } from '../redis/scripts.js'

/**
 * What one batched call of admit.lua or settle.lua sends (redis.ts makes the calls): the batch's
 * scopes once, then each call's own arguments.
 */

const NONE = -1
/**
 * How long a settlement whose reply never came is remembered, so that one sent twice (from the
 * usage buffer, after a lost reply) counts once; one whose reply came leaves at once (settle.lua).
 */
const SETTLED_MARKER_MS = 6 * 3_600_000

/** Every limit, in the order admit.lua reads a scope's limits. */
const ADMIT_LIMITS: readonly LimitName[] = LIMIT_NAMES
const SETTLE_LIMITS: readonly LimitName[] = ['tokens_per_minute']

/**
 * The scopes of one batch, each once: its six keys and the limits the script reads, sent once per
 * batch however many of the batch's calls it limits (under load a batch holds many calls of the
 * same few scopes, and per-call copies of their keys were most of the bytes Redis parsed and the
 * gateway encoded: bench/script-encoding.ts). A call names a scope by its place, from 1. A scope whose
 * limits changed within the batch gets a place of its own.
 */
export class ScopeTable {
  readonly keys: string[] = []
  readonly values: Arg[] = []
  /** A scope's key names for a day (the array scopeKeys makes once) → its newest place. */
  private readonly places = new Map<readonly string[], number>()

  constructor(private readonly fields: readonly LimitName[]) {}

  get size(): number {
    return this.keys.length / 6
  }

  place(names: readonly string[], limits: Limits): number {
    const width = this.fields.length
    const known = this.places.get(names)
    if (known !== undefined) {
      let same = true
      for (let i = 0; i < width; i++) if (this.values[(known - 1) * width + i] !== (limits[this.fields[i]!] ?? NONE)) same = false
      if (same) return known
    }
    this.keys.push(names[0]!, names[1]!, names[2]!, names[3]!, names[4]!, names[5]!)
    for (let i = 0; i < width; i++) this.values.push(limits[this.fields[i]!] ?? NONE)
    this.places.set(names, this.size)
    return this.size
  }
}

/** A batch of admissions (admit.lua): its scopes once, then each admission. */
export class AdmitCalls implements CallSink {
  readonly scopes = new ScopeTable(ADMIT_LIMITS)
  readonly args: Arg[] = []

  encode(calls: number) {
    return { keys: this.scopes.keys, args: [calls, this.scopes.size, ...this.scopes.values, ...this.args] }
  }
}

/** A batch of settlements (settle.lua): its scopes and usage hashes once, then each settlement and its marker. */
export class SettleCalls implements CallSink {
  readonly scopes = new ScopeTable(SETTLE_LIMITS)
  /** The admission days of the batch's usage hashes, and the hashes (each day's, then its hourly one). */
  private readonly usageDays: string[] = []
  private readonly usageKeys: string[] = []
  /** The batch's team (a batch holds one team's calls). */
  team = ''
  readonly args: Arg[] = []

  /**
   * `settledKey` names a team's settled set; `takeAnswered` hands over the request ids of the team's
   * settlements answered since its last batch, for the script to take out of that set.
   */
  constructor(
    private readonly settledKey: (team: string) => string,
    private readonly takeAnswered: (team: string) => string[],
  ) {}

  /**
   * The place of the team's usage hash of a day, from 1 (its hourly hash follows it); `keys` makes
   * their names the first time.
   */
  usage(day: string, keys: () => [string, string]): number {
    const known = this.usageDays.indexOf(day)
    if (known >= 0) return known * 2 + 1
    this.usageDays.push(day)
    this.usageKeys.push(...keys())
    return this.usageKeys.length - 1
  }

  encode(calls: number) {
    return {
      keys: [...this.scopes.keys, ...this.usageKeys, this.settledKey(this.team)],
      args: [
        calls,
        this.scopes.size,
        this.usageKeys.length,
        ...this.scopes.values,
        ...this.args,
        SETTLED_MARKER_MS,
        ...this.takeAnswered(this.team),
      ],
    }
  }
}
