/** UTC calendar periods: day and month quotas reset at 00:00 UTC. */

/** The last day asked for, [start, end) in ms and its ISO date: every request asks (profiled). */
let memo = { start: 0, end: 0, iso: '' }

function dayIso(ms: number): string {
  if (ms < memo.start || ms >= memo.end) {
    const start = ms - (((ms % 86_400_000) + 86_400_000) % 86_400_000)
    memo = { start, end: start + 86_400_000, iso: new Date(start).toISOString() }
  }
  return memo.iso
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
  return dayIso(ms).slice(0, 10)
}

export function utcMonth(ms: number): string {
  return dayIso(ms).slice(0, 7)
}

export function dayEnd(ms: number): number {
  const d = new Date(ms)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)
}

export function monthEnd(ms: number): number {
  const d = new Date(ms)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)
}

/** Every day from `from` to `to` inclusive (YYYY-MM-DD), at most `max` of them. */
export function daysBetween(from: string, to: string, max = 400): string[] {
  const days: string[] = []
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`) && days.length < max; t += 86_400_000) {
    days.push(utcDay(t))
  }
  return days
}
