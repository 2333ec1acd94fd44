import { useEffect, useState } from 'preact/hooks'
import { ApiError, api } from './api.js'
import { formatTime } from './format.js'
import { LimitBars } from './LimitBars.js'
import type { Limits, Quota } from './types.js'
import { UsageReport } from './UsageReport.js'
import { ErrorNote } from './Notes.js'

interface TeamView {
  team: { id: string; name: string; limits: Limits; allowed_models: string[] | null }
  key: { id: string; name: string | null; hint: string; expires_at: string | null }
  quota: Quota
}

/** A client key's view: its own team's limits, what remains, and its usage; nothing to change. */
export function TeamViewPage() {
  const [view, setView] = useState<TeamView | null>(null)
  const [error, setError] = useState<ApiError | null>(null)
  useEffect(() => {
    api<TeamView>('GET', '/console/api/team').then(setView, (e: ApiError) => setError(e))
  }, [])
  if (error) return <ErrorNote error={error} />
  if (!view) return <p aria-busy="true">Loading…</p>
  return (
    <>
      <h1>
        {view.team.name} <span class="muted">({view.team.id})</span>
      </h1>
      <p>
        Signed in with key <code>{view.key.hint}</code>
        {view.key.name ? ` (${view.key.name})` : ''}; it expires {view.key.expires_at ? formatTime(view.key.expires_at) : 'never'}.
      </p>
      <section class="card" aria-labelledby="team-limits">
        <h2 id="team-limits">Team limits now</h2>
        <LimitBars status={view.quota.team} label={`Team ${view.team.id}`} />
        {Object.entries(view.quota.models).map(([model, status]) => (
          <div key={model}>
            <h3>{model}</h3>
            <LimitBars status={status} label={`Model ${model}`} />
          </div>
        ))}
        <h3>This key</h3>
        <LimitBars status={view.quota.key} label="This key" />
      </section>
      <div class="card">
        <UsageReport endpoint="/console/api/usage" />
      </div>
    </>
  )
}
