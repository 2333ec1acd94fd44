import { describe, expect, it } from 'vitest'
import type { UpstreamConfig } from '../../src/config.js'
import { Redis } from 'ioredis'
import { FallbackKeyPool, MemoryKeyPool, RedisKeyPool, type KeyPool, type Pick } from '../../src/upstream/key-pool.js'
import { poolUpstream } from '../helpers/key-pool.js'
import { useRedis } from '../helpers/redis.js'

/**
 * What `states` says of a pool's keys, for /metrics, on the in-process pool and the Redis one: the
 * same sequence of picks, 429s and refusals gives the same counts on both, and a key is counted
 * the way `pick` treats it (refused before cooling, cooling before at budget).
 */

const redis = useRedis()
const T0 = Date.parse('2026-03-10T12:00:00Z')
let prefix = 0

const pools: [string, (config: UpstreamConfig) => KeyPool][] = [
  ['in-process', (config) => new MemoryKeyPool(config)],
  ['Redis', (config) => new RedisKeyPool(config, redis.client, `kp${++prefix}:`)],
]

const picked = (pick: Pick): number => {
  if (!pick.ok) throw new Error(`no key: ${JSON.stringify(pick)}`)
  return pick.index
}

describe.each(pools)('key states, %s pool', (_name, make) => {
  it('counts every key available before any request', async () => {
    expect(await make(poolUpstream([2, null, 5])).states(T0)).toEqual({ refused: 0, cooling: 0, at_budget: 0, available: 3 })
  })

  it('a key at its budget is counted so until its oldest request is a minute old', async () => {
    const pool = make(poolUpstream([2, 2]))
    for (let i = 0; i < 3; i++) await pool.pick(T0 + i)
    // Three requests over two keys of two each: one key is full.
    expect(await pool.states(T0 + 10)).toEqual({ refused: 0, cooling: 0, at_budget: 1, available: 1 })
    await pool.pick(T0 + 20)
    expect(await pool.states(T0 + 30)).toEqual({ refused: 0, cooling: 0, at_budget: 2, available: 0 })
    // The first request leaves the minute at T0 + 60 s: its key has room again.
    expect(await pool.states(T0 + 59_999)).toEqual({ refused: 0, cooling: 0, at_budget: 2, available: 0 })
    expect(await pool.states(T0 + 60_000)).toEqual({ refused: 0, cooling: 0, at_budget: 1, available: 1 })
  })

  it('cooling after a 429 until its time; refused after a 401/403, which outranks cooling', async () => {
    const pool = make(poolUpstream([null, null, null]))
    const first = picked(await pool.pick(T0))
    await pool.coolDown(first, T0 + 5_000)
    expect(await pool.states(T0 + 1)).toEqual({ refused: 0, cooling: 1, at_budget: 0, available: 2 })
    await pool.refuse(first, T0 + 2)
    const second = (first + 1) % 3
    await pool.refuse(second, T0 + 3)
    expect(await pool.states(T0 + 4)).toEqual({ refused: 2, cooling: 0, at_budget: 0, available: 1 })
    // The last usable key is never taken out of rotation.
    await pool.refuse((first + 2) % 3, T0 + 5)
    expect(await pool.states(T0 + 6)).toEqual({ refused: 2, cooling: 0, at_budget: 0, available: 1 })
  })

  it('a pool with no keys has none in any state', async () => {
    expect(await make(poolUpstream([])).states(T0)).toEqual({ refused: 0, cooling: 0, at_budget: 0, available: 0 })
  })
})

describe('key states while Redis is away', () => {
  it('come from the budgets the instance keeps itself, as its picks do', async () => {
    const config = poolUpstream([1, 1, 1])
    let up = false
    // One pool on the test's Redis, one on a client that cannot send.
    const offline = new Redis(redis.server.url, { lazyConnect: true, enableOfflineQueue: false })
    offline.on('error', () => undefined)
    const reachable = new FallbackKeyPool(config, new RedisKeyPool(config, redis.client, `kp${++prefix}:`), () => up)
    const failing = new FallbackKeyPool(config, new RedisKeyPool(config, offline, `kp${++prefix}:`), () => up)
    for (const pool of [reachable, failing]) {
      await pool.pick(T0)
      await pool.pick(T0 + 1)
      expect(await pool.states(T0 + 2)).toEqual({ refused: 0, cooling: 0, at_budget: 2, available: 1 })
    }
    up = true
    // Redis answers: its own state, where the picks made while it was away are not.
    expect(await reachable.states(T0 + 3)).toEqual({ refused: 0, cooling: 0, at_budget: 0, available: 3 })
    // Redis said to be up, and failing: the local view answers.
    await expect(new RedisKeyPool(config, offline, 'x:').states(T0)).rejects.toThrow()
    expect(await failing.states(T0 + 3)).toEqual({ refused: 0, cooling: 0, at_budget: 2, available: 1 })
    offline.disconnect()
  })
})
