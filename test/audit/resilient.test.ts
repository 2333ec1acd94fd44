import type { FastifyBaseLogger } from 'fastify'
import { Redis } from 'ioredis'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { RedisAudit } from '../../src/audit/redis.js'
import { ResilientAudit } from '../../src/audit/resilient.js'
import { REDIS_OPTIONS } from '../../src/redis/connection.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'
import { auditEntry } from '../helpers/audit.js'
import { waitFor } from '../helpers/wait.js'

/**
 * Audit entries that Redis misses (it is away, or a batch's write fails) wait in memory and are
 * written, in order, once it is back; past the buffer's bound the oldest go, and are counted.
 */

const entry = (i: number) => auditEntry(i)

let server: RedisServer
let client: Redis
let audit: ResilientAudit
/** What the gateway believes of Redis (its connection's state): it lags a server that just died. */
let up = true

async function start(bufferMax = 100) {
  server = await startRedis()
  client = new Redis(server.url, REDIS_OPTIONS)
  client.on('error', () => {}) // the tests stop the server
  await waitFor(() => client.status === 'ready', 'the client to connect')
  up = true
  audit = new ResilientAudit({
    primary: new RedisAudit({ client, prefix: 't:' }),
    up: () => up,
    bufferMax,
    log: pino({ level: 'silent' }) as unknown as FastifyBaseLogger,
  })
}

/** The server back on its port, and the client connected to it again. */
async function restart() {
  server = await startRedis([], server.port)
  await waitFor(() => client.status === 'ready', 'the client to reconnect', 10_000)
}

const written = async () =>
  ((await client.xrange('t:audit', '-', '+')) as [string, string[]][]).map(([, f]) => f[f.indexOf('request_id') + 1])

afterEach(async () => {
  audit.close()
  client.disconnect()
  await server.stop()
})

describe('audit entries while Redis is away', () => {
  it('a batch whose write fails waits in front of later entries, and all are written in order when Redis is back', async () => {
    await start()
    await audit.write(entry(1))
    expect(await written()).toEqual(['req-1'])
    await server.stop() // the gateway has not noticed yet: the next batch is sent, and fails
    const batch = audit.write(entry(2)) // (goes out a moment later, in a batch)
    up = false
    await audit.write(entry(3)) // waits meanwhile
    await batch
    expect(audit.backlog().waiting).toBe(2)
    await audit.write(entry(4))
    expect(audit.backlog().waiting).toBe(3)

    await restart() // (a new, empty server: req-1 went with the old one)
    up = true
    // Nothing overtakes what waits: an entry that comes before the flush goes behind it.
    await audit.write(entry(5))
    await audit.resend()
    expect(audit.backlog().waiting).toBe(0)
    expect(await written()).toEqual(['req-2', 'req-3', 'req-4', 'req-5'])
    expect(audit.backlog().dropped).toBe(0)
  })

  it('a flush whose write fails puts its entries back in front, and the next flush writes them', async () => {
    await start()
    up = false
    for (let i = 1; i <= 3; i++) await audit.write(entry(i))
    await server.stop()
    up = true // believed back, but is not
    await audit.resend()
    expect(audit.backlog().waiting).toBe(3)
    up = false
    await audit.write(entry(4))
    await restart()
    up = true
    await audit.resend()
    expect(await written()).toEqual(['req-1', 'req-2', 'req-3', 'req-4'])
  })

  it('past its bound the buffer drops the oldest entries and counts them', async () => {
    await start(5)
    up = false
    for (let i = 1; i <= 8; i++) await audit.write(entry(i))
    expect(audit.backlog().waiting).toBe(5)
    expect(audit.backlog().dropped).toBe(3)
    up = true
    await audit.resend()
    expect(await written()).toEqual(['req-4', 'req-5', 'req-6', 'req-7', 'req-8'])
  })
})
