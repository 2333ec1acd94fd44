import type { LimitName } from './types.js'

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })
const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 6 })

export const formatCount = (n: number) => integer.format(n)
export const formatUsd = (n: number) => usd.format(n)
export const formatLimit = (name: LimitName, n: number) => (name.startsWith('usd_') ? formatUsd(n) : formatCount(n))

/** A timestamp as the reader's local date and time, or a dash. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—'
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? '—' : d.toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' })
}

/** Today's UTC date, and the date `days` before it, as YYYY-MM-DD (the usage report's days are UTC). */
export function utcDate(daysBefore = 0): string {
  return new Date(Date.now() - daysBefore * 86_400_000).toISOString().slice(0, 10)
}
