import type { FastifyBaseLogger } from 'fastify'
import { describe, expect, it } from 'vitest'
import { Backlog } from '../../src/quota/resilient.js'

/** What waits for Redis: bounded, oldest dropped first, and a full buffer does not flood the log. */

function errorLog() {
  const lines: { fields: Record<string, unknown>; msg: string }[] = []
  const log = { error: (fields: Record<string, unknown>, msg: string) => lines.push({ fields, msg }) } as unknown as FastifyBaseLogger
  return { log, lines }
}

describe('Backlog', () => {
  it('keeps the newest up to its bound, puts a failed write back in front, and counts what it dropped', () => {
    const { log } = errorLog()
    const b = new Backlog<number>(4, log, 'usage')
    for (const n of [1, 2, 3]) b.push(n)
    b.pushFront([-1, 0]) // older than what waits: in front, and the oldest of all goes
    expect(b.items).toEqual([0, 1, 2, 3])
    expect(b.dropped).toBe(1)
    b.push(4)
    expect(b.items).toEqual([1, 2, 3, 4])
    expect(b.dropped).toBe(2)
  })

  it('says it is dropping once, then at most every 10 s however many it drops, with the count so far', () => {
    const { log, lines } = errorLog()
    let now = 1_000_000
    const b = new Backlog<number>(2, log, 'audit', () => now)
    for (let i = 0; i < 1_000; i++) b.push(i) // a full buffer under load: one drop per record
    expect(b.dropped).toBe(998)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toEqual({ fields: { dropped_total: 1, buffer_max: 2 }, msg: 'audit buffer full: the oldest are dropped' })
    now += 9_999
    b.push(1_000)
    expect(lines).toHaveLength(1)
    now += 1
    b.push(1_001)
    expect(lines).toHaveLength(2)
    expect(lines[1]!.fields).toEqual({ dropped_total: 1_000, buffer_max: 2 })
    expect(b.items).toEqual([1_000, 1_001])
  })
})
