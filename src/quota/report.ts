import { toUsd } from '../spend.js'
import type { UsageQuery, UsageRow } from './types.js'

/**
 * Usage is kept per team and UTC day as counters named `<key id>\t<model>\t<metric>`, or
 * `<key id>\t<model>\t<end user>\t<metric>` for a request that named its end user (percent-encoded,
 * so no tab of its own splits the name), metric one of r (requests), p (prompt tokens),
 * c (completion tokens), t (total tokens), e (estimated requests), u (cost in micro-dollars).
 * The same counters per hour are kept apart (a hash per team and day whose fields are led by the
 * UTC hour, `<HH>\t<key id>\t…`), for HOURLY_RETENTION_DAYS: a report by day never reads them.
 */

/** How long the hourly counters are kept; a report by hour covers at most MAX_HOURLY_DAYS. */
export const HOURLY_RETENTION_DAYS = 35
export const MAX_HOURLY_DAYS = 31

export const usageField = (keyId: string, model: string, endUser?: string | null) =>
  endUser ? `${keyId}\t${model}\t${encodeURIComponent(endUser)}\t` : `${keyId}\t${model}\t`

/** The metrics in the order both engines count them (settle.lua's ARGV, the memory engine's rows). */
export const USAGE_METRICS = ['r', 'p', 'c', 't', 'e', 'u'] as const

/** Each metric's column; the cost is summed in micro-dollars, and shown in USD at the end. */
const METRICS: Record<string, keyof UsageRow> = {
  r: 'requests',
  p: 'prompt_tokens',
  c: 'completion_tokens',
  t: 'total_tokens',
  e: 'estimated_requests',
  u: 'cost_usd',
} satisfies Record<(typeof USAGE_METRICS)[number], keyof UsageRow>

/**
 * Sums the counters of each (team, day) into rows grouped as the query asks, filtered by key and
 * model. Grouped by hour, the sources are the hourly counters.
 */
export function aggregateUsage(sources: { team: string; day: string; fields: Iterable<[string, number]> }[], q: UsageQuery): UsageRow[] {
  const rows = new Map<string, UsageRow>()
  const hourly = q.groupBy.includes('hour')
  for (const { team, day, fields } of sources) {
    for (const [field, value] of fields) {
      const parts = field.split('\t')
      const hour = hourly ? `${day}T${parts.shift()}` : undefined
      const [key, model] = parts
      const metric = parts[parts.length - 1]
      const column = metric === undefined ? undefined : METRICS[metric]
      if (key === undefined || model === undefined || column === undefined || parts.length > 4) continue
      const endUser = parts.length === 4 ? decodeURIComponent(parts[2]!) : ''
      if (q.key !== undefined && key !== q.key) continue
      if (q.model !== undefined && model !== q.model) continue
      if (q.endUser !== undefined && endUser !== q.endUser) continue
      const group = {
        team,
        ...(q.groupBy.includes('day') ? { day } : {}),
        ...(hour !== undefined ? { hour } : {}),
        ...(q.groupBy.includes('model') ? { model } : {}),
        ...(q.groupBy.includes('key') ? { key } : {}),
        ...(q.groupBy.includes('end_user') ? { end_user: endUser } : {}),
      }
      const id = JSON.stringify(group)
      let row = rows.get(id)
      if (!row)
        rows.set(
          id,
          (row = { ...group, requests: 0, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, estimated_requests: 0, cost_usd: 0 }),
        )
      ;(row[column] as number) += Number(value)
    }
  }
  for (const row of rows.values()) row.cost_usd = toUsd(row.cost_usd)
  return [...rows.values()].sort((a, b) =>
    JSON.stringify([a.team, a.day, a.hour, a.model, a.key, a.end_user]).localeCompare(
      JSON.stringify([b.team, b.day, b.hour, b.model, b.key, b.end_user]),
    ),
  )
}
