import { useEffect, useMemo, useState } from 'preact/hooks'
import { ApiError, api, query } from './api.js'
import { formatCount, formatUsd, utcDate } from './format.js'
import { TimeChart } from './TimeChart.js'
import type { List, UsageRow } from './types.js'
import { ErrorNote, EmptyRow } from './Notes.js'

type Granularity = 'day' | 'hour'

interface Filters {
  team: string
  key: string
  model: string
  end_user: string
  from: string
  to: string
  granularity: Granularity
}

/** The buckets from `from` to `to` (UTC), as the report names them and as unix seconds. */
function buckets(from: string, to: string, granularity: Granularity): { name: string; at: number }[] {
  const step = granularity === 'day' ? 86_400_000 : 3_600_000
  const end = Date.parse(`${to}T00:00:00Z`) + 86_400_000
  const out: { name: string; at: number }[] = []
  for (let t = Date.parse(`${from}T00:00:00Z`); t < end && out.length < 10_000; t += step) {
    const iso = new Date(t).toISOString()
    out.push({ name: granularity === 'day' ? iso.slice(0, 10) : iso.slice(0, 13), at: t / 1000 })
  }
  return out
}

/**
 * Usage over time: one request to the usage report (grouped by day or hour, model and key), drawn
 * as charts of requests, tokens and cost, and listed row by row; the same query as CSV.
 */
export function UsageReport({ endpoint, teams, title = 'Usage' }: { endpoint: string; teams?: string[]; title?: string }) {
  const [filters, setFilters] = useState<Filters>({
    team: '',
    key: '',
    model: '',
    end_user: '',
    from: utcDate(6),
    to: utcDate(0),
    granularity: 'day',
  })
  const [applied, setApplied] = useState(filters)
  const [rows, setRows] = useState<UsageRow[] | null>(null)
  const [error, setError] = useState<ApiError | null>(null)

  const params = {
    team: applied.team,
    key: applied.key,
    model: applied.model,
    end_user: applied.end_user,
    from: applied.from,
    to: applied.to,
    group_by: `${applied.granularity},model,key`,
  }
  const search = query(params)
  useEffect(() => {
    setError(null)
    api<List<UsageRow>>('GET', `${endpoint}${search}`).then(
      (r) => setRows(r.data),
      (e: ApiError) => {
        setRows(null)
        setError(e)
      },
    )
  }, [endpoint, search])

  const chart = useMemo(() => {
    const slots = buckets(applied.from, applied.to, applied.granularity)
    const place = new Map(slots.map((s, i) => [s.name, i]))
    const zeros = () => slots.map(() => 0)
    const requests = zeros()
    const prompt = zeros()
    const completion = zeros()
    const cost = zeros()
    for (const row of rows ?? []) {
      const i = place.get((applied.granularity === 'day' ? row.day : row.hour) ?? '')
      if (i === undefined) continue
      requests[i] = requests[i]! + row.requests
      prompt[i] = prompt[i]! + row.prompt_tokens
      completion[i] = completion[i]! + row.completion_tokens
      cost[i] = cost[i]! + row.cost_usd
    }
    return {
      x: slots.map((s) => s.at),
      requests: [{ label: 'Requests', values: requests }],
      tokens: [
        { label: 'Prompt tokens', values: prompt },
        { label: 'Completion tokens', values: completion },
      ],
      cost: [{ label: 'Cost (USD)', values: cost.map((c) => Math.round(c * 1e6) / 1e6) }],
    }
  }, [rows, applied])

  const set = (field: keyof Filters) => (e: Event) => setFilters({ ...filters, [field]: (e.target as HTMLInputElement).value })
  const fieldError = (name: string) => (error?.param === name ? error.message : null)

  return (
    <section aria-labelledby="usage-title">
      <h2 id="usage-title">{title}</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault()
          setApplied(filters)
        }}
      >
        {teams && (
          <label>
            Team
            <select name="team" value={filters.team} onChange={set('team')}>
              <option value="">All teams</option>
              {teams.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </label>
        )}
        <label>
          Key id
          <input name="key" value={filters.key} onInput={set('key')} placeholder="key_…" />
        </label>
        <label>
          Model
          <input name="model" value={filters.model} onInput={set('model')} />
        </label>
        <label>
          End user
          <input name="end_user" value={filters.end_user} onInput={set('end_user')} />
        </label>
        <label>
          From
          <input name="from" type="date" value={filters.from} onInput={set('from')} aria-invalid={fieldError('from') !== null} />
        </label>
        <label>
          To
          <input name="to" type="date" value={filters.to} onInput={set('to')} />
        </label>
        <label>
          Per
          <select name="granularity" value={filters.granularity} onChange={set('granularity')}>
            <option value="day">day</option>
            <option value="hour">hour</option>
          </select>
        </label>
        <button type="submit">Show</button>
        <a class="button secondary" href={`${endpoint}${query({ ...params, format: 'csv' })}`} download>
          Download CSV
        </a>
      </form>
      <ErrorNote error={error} />
      <div class="charts">
        <TimeChart id="requests" title="Requests" x={chart.x} series={chart.requests} />
        <TimeChart id="tokens" title="Tokens" x={chart.x} series={chart.tokens} />
        <TimeChart id="cost" title="Cost" x={chart.x} series={chart.cost} />
      </div>
      <div class="table-wrap">
        <table class="usage-table">
          <caption>
            Usage per {applied.granularity}, model and key, {applied.from} to {applied.to} (UTC)
          </caption>
          <thead>
            <tr>
              <th scope="col">Team</th>
              <th scope="col">{applied.granularity === 'day' ? 'Day' : 'Hour'}</th>
              <th scope="col">Model</th>
              <th scope="col">Key</th>
              <th scope="col" class="num">
                Requests
              </th>
              <th scope="col" class="num">
                Prompt tokens
              </th>
              <th scope="col" class="num">
                Completion tokens
              </th>
              <th scope="col" class="num">
                Total tokens
              </th>
              <th scope="col" class="num">
                Cost
              </th>
            </tr>
          </thead>
          <tbody>
            {(rows ?? []).map((r) => (
              <tr key={`${r.team}|${r.day ?? r.hour}|${r.model}|${r.key}`}>
                <td>{r.team}</td>
                <td>{applied.granularity === 'day' ? r.day : `${r.hour?.replace('T', ' ')}:00`}</td>
                <td>{r.model}</td>
                <td>
                  <code>{r.key}</code>
                </td>
                <td class="num" data-col="requests">
                  {formatCount(r.requests)}
                </td>
                <td class="num" data-col="prompt_tokens">
                  {formatCount(r.prompt_tokens)}
                </td>
                <td class="num" data-col="completion_tokens">
                  {formatCount(r.completion_tokens)}
                </td>
                <td class="num" data-col="total_tokens">
                  {formatCount(r.total_tokens)}
                </td>
                <td class="num" data-col="cost_usd">
                  {formatUsd(r.cost_usd)}
                </td>
              </tr>
            ))}
            {rows !== null && rows.length === 0 && <EmptyRow columns={9}>No usage in this range.</EmptyRow>}
          </tbody>
        </table>
      </div>
    </section>
  )
}
