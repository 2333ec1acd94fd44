import { beforeEach, describe, expect, it } from 'vitest'
import { hashClientKey } from '../../src/keys.js'
import { MemoryStore } from '../../src/store/memory.js'
import { Redis } from 'ioredis'
import { REDIS_OPTIONS } from '../../src/redis/connection.js'
import { RedisStore } from '../../src/store/redis.js'
import type { ApiKeyRecord, Store, Team } from '../../src/store/types.js'
import { useRedis } from '../helpers/redis.js'

/** One contract, two stores: the embedded one and Redis (a real redis-server on a free port). */

const redis = useRedis()
let prefixCounter = 0

const team = (id: string, at = '2026-01-01T00:00:00.000Z'): Team => ({
  id,
  name: id.toUpperCase(),
  limits: {},
  model_limits: {},
  allowed_models: null,
  end_user_limits: {},
  created_at: at,
  updated_at: at,
})
const key = (id: string, teamId: string, secret: string, at = '2026-01-01T00:00:00.000Z'): ApiKeyRecord => ({
  id,
  team: teamId,
  name: null,
  hash: hashClientKey(secret),
  hint: 'tg-x…y',
  limits: {},
  allowed_models: null,
  created_at: at,
  expires_at: null,
  revoked_at: null,
  last_used_at: null,
  replaced_by: null,
})

const findKey = async (store: Store, hash: string) => (await store.authenticate(hash))?.key ?? null

describe.each([
  ['memory', () => new MemoryStore() as Store],
  ['redis', () => new RedisStore({ client: redis.client, prefix: `t${++prefixCounter}:` }) as Store],
])('%s store', (_name, make) => {
  let store: Store
  beforeEach(() => {
    store = make()
  })

  it('creates a team once; the second create is refused and changes nothing', async () => {
    expect(await store.createTeam({ ...team('ml'), limits: { requests_per_minute: 10 } })).toBe(true)
    expect(await store.createTeam({ ...team('ml'), name: 'other' })).toBe(false)
    expect(await store.getTeam('ml')).toEqual({ ...team('ml'), limits: { requests_per_minute: 10 } })
    expect(await store.getTeam('nope')).toBeNull()
  })

  it('lists teams sorted by id', async () => {
    await store.createTeam(team('b'))
    await store.createTeam(team('a'))
    expect((await store.listTeams()).map((t) => t.id)).toEqual(['a', 'b'])
  })

  it('updates a team, and never recreates a missing one', async () => {
    await store.createTeam(team('ml'))
    const updated = await store.updateTeam('ml', { name: 'ML', limits: { tokens_per_day: 5 } }, '2026-02-01T00:00:00.000Z')
    expect(updated).toEqual({ ...team('ml'), name: 'ML', limits: { tokens_per_day: 5 }, updated_at: '2026-02-01T00:00:00.000Z' })
    expect(await store.updateTeam('ghost', { name: 'x' }, 'now')).toBeNull()
    expect(await store.getTeam('ghost')).toBeNull()
  })

  it('finds an active key by hash, lists it, and forgets it when revoked', async () => {
    await store.createTeam(team('ml'))
    expect(await store.createKey(key('key_1', 'ml', 'secret-1'))).toBe(true)
    expect(await findKey(store, hashClientKey('secret-1'))).toEqual(key('key_1', 'ml', 'secret-1'))
    expect(await findKey(store, hashClientKey('secret-2'))).toBeNull()

    expect(await store.revokeKey('key_1', '2026-03-01T00:00:00.000Z')).toBe(true)
    expect(await findKey(store, hashClientKey('secret-1'))).toBeNull()
    expect(await store.revokeKey('key_1', '2026-04-01T00:00:00.000Z')).toBe(true)
    expect((await store.getKey('key_1'))?.revoked_at).toBe('2026-03-01T00:00:00.000Z')
    expect((await store.listKeys('ml')).map((k) => [k.id, k.revoked_at])).toEqual([['key_1', '2026-03-01T00:00:00.000Z']])
    expect(await store.revokeKey('key_none', 'now')).toBe(false)
  })

  it('authenticates a key with its team in one call, and updates a key everywhere', async () => {
    await store.createTeam({ ...team('ml'), limits: { tokens_per_day: 100 }, model_limits: { 'a/b': { requests_per_minute: 3 } } })
    await store.createKey(key('key_1', 'ml', 's1'))
    const principal = await store.authenticate(hashClientKey('s1'))
    expect(principal?.team).toMatchObject({
      id: 'ml',
      limits: { tokens_per_day: 100 },
      model_limits: { 'a/b': { requests_per_minute: 3 } },
    })
    expect(principal?.key.id).toBe('key_1')

    const updated = await store.updateKey('key_1', { name: 'laptop', limits: { concurrent_requests: 2 } })
    expect(updated).toMatchObject({ name: 'laptop', limits: { concurrent_requests: 2 } })
    expect((await store.authenticate(hashClientKey('s1')))?.key).toMatchObject({ name: 'laptop', limits: { concurrent_requests: 2 } })
    expect(await store.updateKey('key_none', { name: 'x' })).toBeNull()

    await store.revokeKey('key_1', 'now')
    await store.updateKey('key_1', { name: 'after' })
    expect(await store.authenticate(hashClientKey('s1'))).toBeNull()
    expect((await store.getKey('key_1'))?.name).toBe('after')
  })

  it('records last use in batches, and expiry and replacement of a rotated key, never resurrecting a deleted key', async () => {
    await store.createTeam(team('ml'))
    await store.createKey(key('key_1', 'ml', 's1'))
    await store.touchKeys(
      new Map([
        ['key_1', '2026-05-01T00:00:00.000Z'],
        ['key_gone', '2026-05-01T00:00:00.000Z'],
      ]),
    )
    expect((await store.getKey('key_1'))?.last_used_at).toBe('2026-05-01T00:00:00.000Z')
    expect(await store.getKey('key_gone')).toBeNull()
    await store.updateKey('key_1', { expires_at: '2026-05-02T00:00:00.000Z', replaced_by: 'key_2' })
    expect((await store.authenticate(hashClientKey('s1')))?.key).toMatchObject({
      expires_at: '2026-05-02T00:00:00.000Z',
      replaced_by: 'key_2',
    })
  })

  it('refuses a key for a team that does not exist, storing nothing', async () => {
    expect(await store.createKey(key('key_1', 'ghost', 's'))).toBe(false)
    expect(await findKey(store, hashClientKey('s'))).toBeNull()
    expect(await store.getKey('key_1')).toBeNull()
  })

  it('keeps optional fields of a key', async () => {
    await store.createTeam(team('ml'))
    const k = { ...key('key_1', 'ml', 's'), name: 'laptop', expires_at: '2027-01-01T00:00:00.000Z' }
    await store.createKey(k)
    expect(await store.getKey('key_1')).toEqual(k)
  })

  it("deleting a team deletes it and its keys, which fail at once; other teams' keys stay", async () => {
    await store.createTeam(team('ml'))
    await store.createTeam(team('ops'))
    await store.createKey(key('key_1', 'ml', 's1'))
    await store.createKey(key('key_2', 'ml', 's2'))
    await store.createKey(key('key_3', 'ops', 's3'))
    expect(await store.deleteTeam('ml')).toBe(true)
    expect(await store.deleteTeam('ml')).toBe(false)
    expect(await store.getTeam('ml')).toBeNull()
    expect(await findKey(store, hashClientKey('s1'))).toBeNull()
    expect(await findKey(store, hashClientKey('s2'))).toBeNull()
    expect(await store.listKeys('ml')).toEqual([])
    expect((await findKey(store, hashClientKey('s3')))?.id).toBe('key_3')
    expect((await store.listTeams()).map((t) => t.id)).toEqual(['ops'])
  })

  it('answers ping', async () => {
    await expect(store.ping()).resolves.toBeUndefined()
  })
})

describe('redis store specifics', () => {
  it('keeps every directory key under one hash tag, so its scripts run on a cluster', async () => {
    const store = new RedisStore({ client: redis.client, prefix: 'tagcheck:' })
    await store.createTeam(team('ml'))
    await store.createKey(key('key_1', 'ml', 's'))
    const keys = await redis.client.keys('tagcheck:*')
    expect(keys.length).toBeGreaterThanOrEqual(5)
    for (const k of keys) expect(k.startsWith('tagcheck:{dir}:')).toBe(true)
  })

  it('stores only the hash of a key, never the plaintext', async () => {
    const store = new RedisStore({ client: redis.client, prefix: 'plain:' })
    await store.createTeam(team('ml'))
    await store.createKey(key('key_1', 'ml', 'tg-the-plaintext-secret'))
    const dump: string[] = []
    for (const k of await redis.client.keys('plain:*')) {
      const type = await redis.client.type(k)
      if (type === 'hash') dump.push(JSON.stringify(await redis.client.hgetall(k)))
      else if (type === 'set') dump.push(JSON.stringify(await redis.client.smembers(k)))
    }
    expect(dump.join('\n')).not.toContain('tg-the-plaintext-secret')
    expect(dump.join('\n')).toContain(hashClientKey('tg-the-plaintext-secret'))
  })

  it('reports an unreachable server through ping', async () => {
    const down = new RedisStore({ client: new Redis('redis://127.0.0.1:1', REDIS_OPTIONS).on('error', () => undefined), ownsClient: true })
    await expect(down.ping()).rejects.toThrow()
    await down.close()
  })
})
