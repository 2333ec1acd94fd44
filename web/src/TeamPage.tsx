import { useEffect, useState } from 'preact/hooks'
import { ApiError, api } from './api.js'
import { KeysPanel } from './KeysPanel.js'
import { LimitBars } from './LimitBars.js'
import { TeamForm } from './TeamForm.js'
import type { Team } from './types.js'
import { ErrorNote } from './Notes.js'

/** One team: its limits' use (team and each model), its settings, its keys. */
export function TeamPage({ id }: { id: string }) {
  const [team, setTeam] = useState<Team | null>(null)
  const [error, setError] = useState<ApiError | null>(null)
  const [editing, setEditing] = useState(false)

  const load = () =>
    api<Team>('GET', `/admin/teams/${encodeURIComponent(id)}`).then(
      (t) => {
        setTeam(t)
        setError(null)
      },
      (e: ApiError) => setError(e),
    )
  useEffect(() => void load(), [id])

  if (error) return <ErrorNote error={error} />
  if (!team) return <p aria-busy="true">Loading…</p>
  return (
    <>
      <div class="page-head">
        <h1>
          {team.name} <span class="muted">({team.id})</span>
        </h1>
        {!editing && (
          <button type="button" onClick={() => setEditing(true)}>
            Edit team
          </button>
        )}
      </div>
      {editing ? (
        <section class="card" aria-labelledby="edit-title">
          <h2 id="edit-title">Edit team</h2>
          <TeamForm
            team={team}
            onSaved={() => {
              setEditing(false)
              void load()
            }}
            onCancel={() => setEditing(false)}
          />
        </section>
      ) : (
        <section class="card" aria-labelledby="use-title">
          <h2 id="use-title">Limits now</h2>
          <LimitBars status={team.quota?.team} label={`Team ${team.id}`} />
          {Object.entries(team.quota?.models ?? {}).map(([model, status]) => (
            <div key={model}>
              <h3>{model}</h3>
              <LimitBars status={status} label={`Model ${model}`} />
            </div>
          ))}
          <p>Allowed models: {team.allowed_models === null ? 'every model' : team.allowed_models.map((m) => <code key={m}>{m} </code>)}</p>
        </section>
      )}
      <div class="card">
        <KeysPanel team={team.id} />
      </div>
    </>
  )
}
