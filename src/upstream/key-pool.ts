import { hash, randomUUID } from 'node:crypto'
import type { UpstreamConfig } from '../config.js'
import type { RedisClient } from '../redis/connection.js'
import { RedisKeys } from '../redis/keys.js'
import { BatchedScript, type CallSink } from '../redis/batch.js'
import { LuaScript, type Arg } from '../redis/scripts.js'

/**
 * The upstream keys of one upstream, shared by every gateway instance: each request goes out with
 * the key that has the most room in its requests-per-minute budget (counted in Redis when there is
 * one), keys answering 429 cool down, keys the upstream refuses leave the rotation.
 */

export type Pick = { ok: true; index: number; key: string; label: string } | { ok: false; retryAfterMs: number | null }

/** Where a pool's keys stand, each counted once, in the order `pick` checks them (key_states.lua answers places in this list). */
export const KEY_STATES = ['refused', 'cooling', 'at_budget', 'available'] as const
export type KeyState = (typeof KEY_STATES)[number]
export type KeyStates = Record<KeyState, number>

export interface KeyPool {
  readonly size: number
  /**
   * Chooses a key and counts one request against it; or says when one will have room (null: none
   * ever). A pool that needs no round trip answers at once, without a promise.
   */
  pick(now: number): Pick | Promise<Pick>
  /** A 429: leave this key alone until then. */
  coolDown(index: number, untilMs: number): Promise<void>
  /**
   * A 401/403: the upstream refuses this key, which leaves the rotation, unless it is the last
   * usable one (then it stays: every request would fail either way, and it recovers the moment the
   * operator fixes it upstream).
   */
  refuse(index: number, now: number): Promise<void>
  /** How many keys are refused, cooling down, at their budget for this minute, or available (for /metrics). */
  states(now: number): KeyStates | Promise<KeyStates>
  /** Each key's state, in the config's order (the console's upstream view). */
  keyStates(now: number): KeyState[] | Promise<KeyState[]>
}

/** Counts each key's state. */
function tally(states: KeyState[]): KeyStates {
  const counts: KeyStates = { refused: 0, cooling: 0, at_budget: 0, available: 0 }
  for (const state of states) counts[state]++
  return counts
}

const MINUTE = 60_000

/** A refused key is tried again after this long (the operator may have fixed it upstream). */
export const REFUSED_FOR_MS = 15 * MINUTE

/** Safe to log and to use in Redis key names: never the key itself. */
export const fingerprint = (key: string) => hash('sha256', key).slice(0, 12)

export class MemoryKeyPool implements KeyPool {
  private readonly logs: number[][]
  private readonly coolUntil: number[]
  private readonly refusedUntil: number[]
  private readonly labels: string[]
  private offset = 0

  constructor(private readonly config: UpstreamConfig) {
    this.labels = config.apiKeys.map(fingerprint)
    this.logs = config.apiKeys.map(() => [])
    this.coolUntil = config.apiKeys.map(() => 0)
    this.refusedUntil = config.apiKeys.map(() => 0)
  }

  get size(): number {
    return this.config.apiKeys.length
  }

  pick(now: number): Pick {
    const n = this.size
    let best = -1
    let bestRoom = 0
    let wait: number | null = null
    this.offset = (this.offset + 1) % Math.max(1, n)
    for (let j = 0; j < n; j++) {
      const i = (j + this.offset) % n
      if (this.refusedUntil[i]! > now) continue
      if (this.coolUntil[i]! > now) {
        wait = Math.min(wait ?? Infinity, this.coolUntil[i]! - now)
        continue
      }
      const budget = this.config.keyBudgets[i] ?? null
      let room = Infinity
      if (budget !== null) {
        const log = (this.logs[i] = this.logs[i]!.filter((t) => t > now - MINUTE))
        room = budget - log.length
        if (room <= 0) wait = Math.min(wait ?? Infinity, (log[0] ?? now) + MINUTE - now)
      }
      if (room > 0 && room > bestRoom) {
        best = i
        bestRoom = room
      }
    }
    if (best < 0) return { ok: false, retryAfterMs: wait === null ? null : Math.max(1, Math.ceil(wait)) }
    if (this.config.keyBudgets[best] !== null && this.config.keyBudgets[best] !== undefined) this.logs[best]!.push(now)
    const key = this.config.apiKeys[best]!
    return { ok: true, index: best, key, label: this.labels[best]! }
  }

  async coolDown(index: number, untilMs: number): Promise<void> {
    this.coolUntil[index] = Math.max(this.coolUntil[index] ?? 0, untilMs)
  }

  states(now: number): KeyStates {
    return tally(this.keyStates(now))
  }

  keyStates(now: number): KeyState[] {
    return this.config.apiKeys.map((_, i): KeyState => {
      if (this.refusedUntil[i]! > now) return 'refused'
      if (this.coolUntil[i]! > now) return 'cooling'
      const budget = this.config.keyBudgets[i] ?? null
      if (budget !== null && this.logs[i]!.filter((t) => t > now - MINUTE).length >= budget) return 'at_budget'
      return 'available'
    })
  }

  async refuse(index: number, now: number): Promise<void> {
    const usable = this.refusedUntil.filter((until, i) => i !== index && until <= now).length
    if (usable > 0) this.refusedUntil[index] = now + REFUSED_FOR_MS
  }
}

/** A batch of picks (pick_key.lua): the pool's keys and budgets once, then each pick's time, id and offset. */
class PickCalls implements CallSink {
  readonly args: Arg[] = []

  constructor(
    private readonly keys: string[],
    private readonly budgets: readonly Arg[],
  ) {}

  encode(calls: number) {
    return { keys: this.keys, args: [calls, this.budgets.length / 2, ...this.budgets, ...this.args] }
  }
}

export class RedisKeyPool implements KeyPool {
  private readonly fingerprints: string[]
  /** Picks made while one is in flight go out together, as one call (redis/batch.ts). */
  private readonly script: BatchedScript<PickCalls>
  private readonly stateScript: LuaScript
  private readonly names: RedisKeys
  /** The scripts' keys: cooldowns, refusals, then each key's one-minute log. */
  private readonly keys: string[]
  /** Per key: its fingerprint and budget (-1: none). */
  private readonly budgets: (string | number)[]
  private offset = 0

  constructor(
    private readonly config: UpstreamConfig,
    private readonly client: RedisClient,
    prefix?: string,
  ) {
    this.fingerprints = config.apiKeys.map(fingerprint)
    this.names = new RedisKeys(prefix)
    this.stateScript = new LuaScript(client, 'key_states')
    this.keys = [this.k('cool'), this.k('refused'), ...this.fingerprints.map((fp) => this.k(`key:${fp}:rpm`))]
    this.budgets = this.fingerprints.flatMap((fp, i) => [fp, config.keyBudgets[i] ?? -1])
    this.script = new BatchedScript(new LuaScript(client, 'pick_key'), () => new PickCalls(this.keys, this.budgets))
  }

  get size(): number {
    return this.config.apiKeys.length
  }

  /** All of one upstream's pool state shares the hash tag {u:<name>}: one slot on a cluster. */
  private k(suffix: string): string {
    return this.names.upstream(this.config.name, suffix)
  }

  async pick(now: number): Promise<Pick> {
    const n = this.size
    if (n === 0) return { ok: false, retryAfterMs: null }
    this.offset = (this.offset + 1) % n
    const offset = this.offset
    const [ok, value] = (await this.script.call(this.config.name, (batch) => batch.args.push(now, randomUUID(), offset))) as [
      number,
      number,
    ]
    if (ok === 1) return { ok: true, index: value, key: this.config.apiKeys[value]!, label: this.fingerprints[value]! }
    return { ok: false, retryAfterMs: value < 0 ? null : value }
  }

  async states(now: number): Promise<KeyStates> {
    return tally(await this.keyStates(now))
  }

  async keyStates(now: number): Promise<KeyState[]> {
    if (this.size === 0) return []
    const codes = (await this.stateScript.run(this.keys, [now, ...this.budgets])) as number[]
    return codes.map((code) => KEY_STATES[code]!)
  }

  async coolDown(index: number, untilMs: number): Promise<void> {
    const fp = this.fingerprints[index]!
    await this.client.hset(this.k('cool'), fp, String(untilMs))
    await this.client.pexpire(this.k('cool'), 10 * MINUTE)
  }

  async refuse(index: number, _now: number): Promise<void> {
    const refused = this.k('refused')
    await this.client.hset(refused, this.fingerprints[index]!, '1')
    await this.client.pexpire(refused, REFUSED_FOR_MS)
    if ((await this.client.hlen(refused)) >= this.size) await this.client.hdel(refused, this.fingerprints[index]!)
  }
}

/** While Redis is away, keys are picked by per-instance budgets, so requests keep going out. */
export class FallbackKeyPool implements KeyPool {
  private readonly local: MemoryKeyPool

  constructor(
    config: UpstreamConfig,
    private readonly primary: KeyPool,
    private readonly up: () => boolean,
  ) {
    this.local = new MemoryKeyPool(config)
  }

  get size(): number {
    return this.primary.size
  }

  pick(now: number): Promise<Pick> {
    return this.shared(
      () => this.primary.pick(now),
      () => this.local.pick(now),
    )
  }

  async states(now: number): Promise<KeyStates> {
    return tally(await this.keyStates(now))
  }

  keyStates(now: number): Promise<KeyState[]> {
    return this.shared(
      () => this.primary.keyStates(now),
      () => this.local.keyStates(now),
    )
  }

  /** The shared pool's answer while Redis is up and answers; else this instance's own. */
  private async shared<T>(primary: () => T | Promise<T>, local: () => T): Promise<T> {
    if (this.up()) {
      try {
        return await primary()
      } catch {
        // fall through to the local budgets
      }
    }
    return local()
  }

  async coolDown(index: number, untilMs: number): Promise<void> {
    await this.local.coolDown(index, untilMs)
    if (this.up()) await this.primary.coolDown(index, untilMs).catch(() => undefined)
  }

  async refuse(index: number, now: number): Promise<void> {
    await this.local.refuse(index, now)
    if (this.up()) await this.primary.refuse(index, now).catch(() => undefined)
  }
}
