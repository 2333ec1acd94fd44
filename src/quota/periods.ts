/** UTC calendar periods: day and month quotas reset at 00:00 UTC. */

/** The last day asked for: [start, end) in ms, its date and month (YYYY-MM-DD, YYYY-MM) and its month's end. Every request asks (profiled). */
let memo = { start: 0, end: 0, day: '', month: '', monthEnd: 0 }

function day(ms: number): typeof memo {
  if (ms < memo.start || ms >= memo.end) {
    const start = ms - (((ms % 86_400_000) + 86_400_000) % 86_400_000)
    const d = new Date(start)
    const iso = d.toISOString()
    memo = {
      start,
      end: start + 86_400_000,
      day: iso.slice(0, 10),
      month: iso.slice(0, 7),
      monthEnd: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1),
    }
  }
  return memo
}

let lastMs = Number.NaN
let lastIso = ''

/** `new Date(ms).toISOString()`, remembered for the last millisecond (requests share them under load). */
export function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastMs = ms
    lastIso = new Date(ms).toISOString()
  }
  return lastIso
}

export function utcDay(ms: number): string {
  return day(ms).day
}

const HOURS = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, '0'))

/** The UTC hour of a time, as `HH` (from the remembered day: no Date, no string made per request). */
export function utcHour(ms: number): string {
  return HOURS[Math.floor((ms - day(ms).start) / 3_600_000)]!
}

export function utcMonth(ms: number): string {
  return day(ms).month
}

export function dayEnd(ms: number): number {
  return day(ms).end
}

export function monthEnd(ms: number): number {
  return day(ms).monthEnd
}

/** Every day from `from` to `to` inclusive (YYYY-MM-DD), at most `max` of them. */
export function daysBetween(from: string, to: string, max = 400): string[] {
  const days: string[] = []
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`) && days.length < max; t += 86_400_000) {
    days.push(utcDay(t))
  }
  return days
}
