import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { dayEnd, daysBetween, isoTime, monthEnd, utcDay, utcHour, utcMonth } from '../../src/quota/periods.js'

/**
 * The UTC periods every request is counted in, made from a remembered day instead of a Date per
 * call: for any time, in any order of calls (the memo moves back and forth), they agree with what
 * Date's own ISO string says.
 */

const time = fc.oneof(
  fc.integer({ min: 0, max: Date.UTC(2200, 0, 1) }),
  // The last and first milliseconds of days, months and leap days.
  fc.constantFrom(
    Date.UTC(2024, 1, 29, 23, 59, 59, 999),
    Date.UTC(2024, 2, 1),
    Date.UTC(2026, 11, 31, 23, 59, 59, 999),
    Date.UTC(2027, 0, 1),
  ),
)

describe('UTC periods', () => {
  it('give the ISO day, month, hour and period ends of any time, whatever was asked before', () => {
    fc.assert(
      fc.property(fc.array(time, { minLength: 1, maxLength: 20 }), (times) => {
        for (const ms of times) {
          const iso = new Date(ms).toISOString()
          expect(utcDay(ms)).toBe(iso.slice(0, 10))
          expect(utcMonth(ms)).toBe(iso.slice(0, 7))
          expect(utcHour(ms)).toBe(iso.slice(11, 13))
          expect(isoTime(ms)).toBe(iso)
          expect(dayEnd(ms)).toBe(Date.parse(`${iso.slice(0, 10)}T00:00:00Z`) + 86_400_000)
          const d = new Date(ms)
          expect(monthEnd(ms)).toBe(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1))
        }
      }),
      { numRuns: 500 },
    )
  })

  it('list the days between two dates, both included, at most as many as asked', () => {
    expect(daysBetween('2024-02-27', '2024-03-01')).toEqual(['2024-02-27', '2024-02-28', '2024-02-29', '2024-03-01'])
    expect(daysBetween('2026-12-07', '2026-12-07')).toEqual(['2026-12-07'])
    expect(daysBetween('2026-12-08', '2026-12-07')).toEqual([])
    expect(daysBetween('2026-01-01', '2026-12-31', 3)).toEqual(['2026-01-01', '2026-01-02', '2026-01-03'])
  })
})
