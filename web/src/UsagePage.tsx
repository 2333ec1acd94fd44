import { useEffect, useState } from 'preact/hooks'
import { api } from './api.js'
import type { List, Team } from './types.js'
import { UsageReport } from './UsageReport.js'

/** Every team's usage (the admin's /admin/usage), filterable by team. */
export function UsagePage() {
  const [teams, setTeams] = useState<string[]>([])
  useEffect(() => {
    api<List<Team>>('GET', '/admin/teams').then(
      (r) => setTeams(r.data.map((t) => t.id)),
      () => setTeams([]),
    )
  }, [])
  return (
    <>
      <h1>Usage</h1>
      <div class="card">
        <UsageReport endpoint="/admin/usage" teams={teams} title="Requests, tokens and cost" />
      </div>
    </>
  )
}
