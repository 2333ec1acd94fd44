import { useEffect, useState } from 'preact/hooks'
import { ApiError, api } from './api.js'
import { LimitBars } from './LimitBars.js'
import { TeamForm } from './TeamForm.js'
import type { List, Team } from './types.js'
import { ErrorNote } from './Notes.js'

/** How often the list's bars are read again. */
const REFRESH_MS = 5_000

/** Every team with the live use of its limits (one request: /admin/teams?include=quota), and a form for a new one. */
export function TeamsPage() {
  const [teams, setTeams] = useState<Team[] | null>(null)
  const [error, setError] = useState<ApiError | null>(null)
  const [creating, setCreating] = useState(false)

  const load = () =>
    api<List<Team>>('GET', '/admin/teams?include=quota').then(
      (r) => {
        setTeams(r.data)
        setError(null)
      },
      (e: ApiError) => setError(e),
    )
  useEffect(() => {
    void load()
    const timer = setInterval(() => void load(), REFRESH_MS)
    return () => clearInterval(timer)
  }, [])

  return (
    <>
      <div class="page-head">
        <h1>Teams</h1>
        {!creating && (
          <button type="button" onClick={() => setCreating(true)}>
            New team
          </button>
        )}
      </div>
      {creating && (
        <section aria-labelledby="new-team-title" class="card">
          <h2 id="new-team-title">New team</h2>
          <TeamForm
            onSaved={(team) => {
              setCreating(false)
              location.hash = `#/teams/${encodeURIComponent(team.id)}`
            }}
            onCancel={() => setCreating(false)}
          />
        </section>
      )}
      <ErrorNote error={error} />
      {teams !== null && teams.length === 0 && <p class="muted">No teams yet.</p>}
      <ul class="team-list">
        {(teams ?? []).map((t) => (
          <li key={t.id} class="card" data-team={t.id}>
            <h2>
              <a href={`#/teams/${encodeURIComponent(t.id)}`}>{t.name}</a> <span class="muted">({t.id})</span>
            </h2>
            <LimitBars status={t.quota?.team} label={`Team ${t.id}`} />
          </li>
        ))}
      </ul>
    </>
  )
}
