import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { GatewayError, invalidRequest, fromStore } from '../errors.js'
import { allScopes } from '../quota/http.js'
import { utcDay } from '../quota/periods.js'
import { MAX_HOURLY_DAYS } from '../quota/report.js'
import { USAGE_GROUPS, type QuotaEngine, type UsageGroup, type UsageRow } from '../quota/types.js'
import type { Principal, Store, Team } from '../store/types.js'
import { describeIssues, firstIssuePath } from '../validation.js'

/**
 * Usage reports. GET /v1/usage (a client key: its own team's usage and what remains of each
 * limit) and GET /admin/usage (rows per team, grouped by day, model and key, as JSON or CSV).
 */

export interface UsageOptions {
  store: Store
  quotas: QuotaEngine
  now: () => number
}

const DAY = /^\d{4}-\d{2}-\d{2}$/
const day = z
  .string()
  .regex(DAY, { error: 'must be a date as YYYY-MM-DD' })
  .refine((d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)), { error: 'is not a real date' })
const MAX_DAYS = 366

const usageQuery = z.strictObject({
  team: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
  model: z.string().min(1).optional(),
  end_user: z.string().min(1).max(256).optional(),
  from: day.optional(),
  to: day.optional(),
  group_by: z
    .string()
    .regex(/^((team|day|hour|model|key|end_user)(,(team|day|hour|model|key|end_user))*)?$/, {
      error: 'must be a comma-separated list of team, day, hour, model, key, end_user',
    })
    .optional(),
  format: z.enum(['json', 'csv'], { error: 'must be json or csv' }).optional(),
})

const COLUMNS = [
  'team',
  'day',
  'hour',
  'model',
  'key',
  'end_user',
  'requests',
  'prompt_tokens',
  'completion_tokens',
  'total_tokens',
  'estimated_requests',
  'cost_usd',
] as const

function csvCell(value: unknown): string {
  const text = value === undefined ? '' : String(value)
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

export function toCsv(rows: UsageRow[], groupBy: readonly string[]): string {
  const columns = COLUMNS.filter((c) => !(USAGE_GROUPS as readonly string[]).includes(c) || groupBy.includes(c))
  const lines = [columns.join(',')]
  for (const row of rows) lines.push(columns.map((c) => csvCell(row[c])).join(','))
  return `${lines.join('\n')}\n`
}

/** Current use of each limit, as {team: {...}, models: {name: {...}}, key?: {...}}. */
export async function quotaView(quotas: QuotaEngine, team: Team, now: number, principal?: Principal) {
  const scopes = allScopes(team, principal?.key)
  const status = await fromStore(quotas.status(team.id, scopes, now))
  const models: Record<string, unknown> = {}
  for (const model of Object.keys(team.model_limits)) models[model] = status[`model:${model}`] ?? {}
  return {
    team: status.team ?? {},
    models,
    ...(principal ? { key: status[`key:${principal.key.id}`] ?? {} } : {}),
  }
}

export const usageRoutes: FastifyPluginAsync<UsageOptions> = async (app, { quotas, now }) => {
  app.get('/v1/usage', async (request) => {
    const principal = request.principal!
    const at = now()
    const today = utcDay(at)
    const monthStart = `${today.slice(0, 7)}-01`
    const [todayRows, monthRows, limits] = await Promise.all([
      fromStore(quotas.usage({ teams: [principal.team.id], from: today, to: today, groupBy: [] })),
      fromStore(quotas.usage({ teams: [principal.team.id], from: monthStart, to: today, groupBy: [] })),
      quotaView(quotas, principal.team, at, principal),
    ])
    const totals = (rows: UsageRow[]) => {
      const { team: _team, ...row } = rows[0] ?? {
        team: '',
        requests: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        estimated_requests: 0,
        cost_usd: 0,
      }
      return row
    }
    return {
      object: 'usage',
      team: principal.team.id,
      key_id: principal.key.id,
      today: { date: today, ...totals(todayRows) },
      this_month: { from: monthStart, to: today, ...totals(monthRows) },
      limits,
    }
  })
}

export const adminUsageRoute: FastifyPluginAsync<UsageOptions> = async (app, options) => {
  app.get('/admin/usage', (request, reply) => answerUsage(request, reply, options))
}

/**
 * The usage report of /admin/usage, as JSON or CSV. With `pinned`, only that team's (the console's
 * team view): asking for another team is refused.
 */
export async function answerUsage(request: FastifyRequest, reply: FastifyReply, { store, quotas, now }: UsageOptions, pinned?: string) {
  const parsed = usageQuery.safeParse(request.query)
  if (!parsed.success) {
    throw invalidRequest(
      `Invalid query: ${describeIssues(parsed.error.issues).join('; ')}`,
      firstIssuePath(parsed.error.issues),
      'invalid_value',
    )
  }
  const q = parsed.data
  if (pinned !== undefined && q.team !== undefined && q.team !== pinned) {
    throw new GatewayError('admin_only', "Only the admin sees other teams' usage.", { param: 'team' })
  }
  const today = utcDay(now())
  const from = q.from ?? q.to ?? today
  const to = q.to ?? (q.from ? today : from)
  if (from > to) throw invalidRequest("Invalid query: 'from' must not be after 'to'.", 'from', 'invalid_value')
  // (Rows are always per team.)
  const groupBy = [...new Set(q.group_by ? q.group_by.split(',') : [])].filter((g): g is UsageGroup => g !== 'team')
  const maxDays = groupBy.includes('hour') ? MAX_HOURLY_DAYS : MAX_DAYS
  if ((Date.parse(to) - Date.parse(from)) / 86_400_000 + 1 > maxDays) {
    const per = groupBy.includes('hour') ? ' by hour' : ''
    throw invalidRequest(`Invalid query: at most ${maxDays} days at a time${per}.`, 'from', 'invalid_value')
  }
  let teams: string[]
  const one = pinned ?? q.team
  if (one !== undefined) {
    if (!(await fromStore(store.getTeam(one)))) throw new GatewayError('team_not_found', `No team with id '${one}'.`, { param: 'team' })
    teams = [one]
  } else {
    teams = (await fromStore(store.listTeams())).map((t) => t.id)
  }
  const rows = await fromStore(
    quotas.usage({
      teams,
      from,
      to,
      groupBy,
      ...(q.key !== undefined ? { key: q.key } : {}),
      ...(q.model !== undefined ? { model: q.model } : {}),
      ...(q.end_user !== undefined ? { endUser: q.end_user } : {}),
    }),
  )
  if (q.format === 'csv') {
    return reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="usage-${from}-${to}.csv"`)
      .send(toCsv(rows, groupBy))
  }
  return { object: 'list', from, to, group_by: groupBy, data: rows }
}
