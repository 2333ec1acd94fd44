import type { FastifyBaseLogger } from 'fastify'
import { describe, expect, it } from 'vitest'
import { Backlog } from '../../src/redis/backlog.js'

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
    expect(b.all()).toEqual([0, 1, 2, 3])
    expect(b.dropped).toBe(1)
    b.push(4)
    expect(b.all()).toEqual([1, 2, 3, 4])
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
    expect(b.all()).toEqual([1_000, 1_001])
  })

  it('takes out the oldest, or a record by identity, across its moving start', () => {
    const { log } = errorLog()
    const b = new Backlog<{ n: number }>(5_000, log, 'usage')
    const records = Array.from({ length: 4_000 }, (_, n) => ({ n }))
    for (const r of records) b.push(r)
    expect(b.take(1_500).map((r) => r.n)).toEqual(records.slice(0, 1_500).map((r) => r.n))
    expect(b.peek()).toBe(records[1_500])
    b.remove(records[1_500]!) // the oldest
    b.remove(records[2_000]!) // one further in
    b.remove(records[10]!) // gone already: nothing happens
    expect(b.length).toBe(2_498)
    expect(b.take(600).map((r) => r.n)).toEqual([
      ...Array.from({ length: 499 }, (_, i) => 1_501 + i),
      ...Array.from({ length: 101 }, (_, i) => 2_001 + i),
    ])
    b.pushFront([records[0]!])
    expect(
      b
        .all()
        .map((r) => r.n)
        .slice(0, 3),
    ).toEqual([0, 2_102, 2_103])
    expect(b.length).toBe(1_899)
  })
})
