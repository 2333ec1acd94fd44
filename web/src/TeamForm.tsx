import { useState } from 'preact/hooks'
import { ApiError, api } from './api.js'
import { LIMIT_LABELS, LIMIT_NAMES, type LimitName, type Limits, type Team } from './types.js'
import { ErrorNote } from './Notes.js'

type LimitTexts = Partial<Record<LimitName, string>>
const texts = (limits: Limits): LimitTexts => Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, String(v)])) as LimitTexts

/** A typed value as the API takes it: a number if it reads as one, else the text (so the API's message names it). */
function value(text: string): number | string {
  const t = text.trim()
  return t !== '' && Number.isFinite(Number(t)) ? Number(t) : t
}

/** Limits as typed: for a new team, the set ones; for an edit, also null for each one cleared. */
function limitsBody(typed: LimitTexts, before: Limits | undefined): Record<string, number | string | null> {
  const body: Record<string, number | string | null> = {}
  for (const name of LIMIT_NAMES) {
    const t = typed[name]?.trim() ?? ''
    if (t !== '') body[name] = value(t)
    else if (before?.[name] !== undefined) body[name] = null
  }
  return body
}

/** The field an API error names, or a field inside it (`allowed_models[1]` belongs to `allowed_models`). */
const concerns = (error: ApiError | null, field: string) =>
  error?.param != null && (error.param === field || error.param.startsWith(`${field}.`) || error.param.startsWith(`${field}[`))

function FieldError({ error, field }: { error: ApiError | null; field: string }) {
  if (!concerns(error, field)) return null
  return (
    <span class="field-error" id={`err-${field}`} role="alert">
      {error!.message}
    </span>
  )
}

function LimitInputs({
  prefix,
  typed,
  onChange,
  error,
}: {
  prefix: string
  typed: LimitTexts
  onChange: (next: LimitTexts) => void
  error: ApiError | null
}) {
  return (
    <div class="limit-grid">
      {LIMIT_NAMES.map((name) => {
        const field = `${prefix}.${name}`
        const bad = concerns(error, field)
        return (
          <label key={name}>
            {LIMIT_LABELS[name]}
            <input
              name={field}
              inputMode="decimal"
              value={typed[name] ?? ''}
              aria-invalid={bad}
              aria-describedby={bad ? `err-${field}` : undefined}
              onInput={(e) => onChange({ ...typed, [name]: (e.target as HTMLInputElement).value })}
            />
            <FieldError error={error} field={field} />
          </label>
        )
      })}
    </div>
  )
}

/**
 * Creates a team, or edits one: name, limits, per-model limits, end-user limits and the models it
 * may use. What the API refuses is shown beside the field it names, in the API's own words.
 */
export function TeamForm({ team, onSaved, onCancel }: { team?: Team; onSaved: (team: Team) => void; onCancel?: () => void }) {
  const [id, setId] = useState('')
  const [name, setName] = useState(team?.name ?? '')
  const [limits, setLimits] = useState(texts(team?.limits ?? {}))
  const [endUser, setEndUser] = useState(texts(team?.end_user_limits ?? {}))
  const [models, setModels] = useState(Object.entries(team?.model_limits ?? {}).map(([model, l]) => ({ model, limits: texts(l) })))
  const [allowed, setAllowed] = useState((team?.allowed_models ?? []).join('\n'))
  const [error, setError] = useState<ApiError | null>(null)
  const [saving, setSaving] = useState(false)

  const submit = async (e: Event) => {
    e.preventDefault()
    setSaving(true)
    setError(null)
    const lines = allowed
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
    const modelLimits: Record<string, unknown> = {}
    for (const row of models)
      if (row.model.trim() !== '') modelLimits[row.model.trim()] = limitsBody(row.limits, team?.model_limits[row.model.trim()])
    if (team) for (const gone of Object.keys(team.model_limits)) if (!(gone in modelLimits)) modelLimits[gone] = null
    const body = {
      ...(team ? {} : { id: id.trim() }),
      name: name.trim() === '' && !team ? undefined : name,
      limits: limitsBody(limits, team?.limits),
      model_limits: modelLimits,
      end_user_limits: limitsBody(endUser, team?.end_user_limits),
      allowed_models: lines.length === 0 ? null : lines,
    }
    try {
      const saved = team
        ? await api<Team>('PATCH', `/admin/teams/${encodeURIComponent(team.id)}`, body)
        : await api<Team>('POST', '/admin/teams', body)
      onSaved(saved)
    } catch (err) {
      setError(err as ApiError)
    } finally {
      setSaving(false)
    }
  }

  const named = (field: string) => concerns(error, field)
  const unplaced =
    error && !['id', 'name', 'limits', 'model_limits', 'end_user_limits', 'allowed_models'].some((f) => named(f)) ? error : null
  return (
    <form class="team-form" onSubmit={(e) => void submit(e)} aria-label={team ? `Edit team ${team.id}` : 'New team'}>
      <ErrorNote error={unplaced} />
      {!team && (
        <label>
          Team id
          <input name="id" required value={id} aria-invalid={named('id')} onInput={(e) => setId((e.target as HTMLInputElement).value)} />
          <FieldError error={error} field="id" />
        </label>
      )}
      <label>
        Name
        <input name="name" value={name} aria-invalid={named('name')} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <FieldError error={error} field="name" />
      </label>
      <fieldset>
        <legend>Team limits (blank: none)</legend>
        <LimitInputs prefix="limits" typed={limits} onChange={setLimits} error={error} />
      </fieldset>
      <fieldset>
        <legend>Per-model limits</legend>
        {models.map((row, i) => (
          <div class="model-row" key={i}>
            <label>
              Model
              <input
                name={`model_limits[${i}]`}
                value={row.model}
                onInput={(e) => setModels(models.map((r, j) => (j === i ? { ...r, model: (e.target as HTMLInputElement).value } : r)))}
              />
            </label>
            <FieldError error={error} field={`model_limits.${row.model.trim()}`} />
            <LimitInputs
              prefix={`model_limits.${row.model.trim()}`}
              typed={row.limits}
              onChange={(next) => setModels(models.map((r, j) => (j === i ? { ...r, limits: next } : r)))}
              error={error}
            />
            <button type="button" class="secondary" onClick={() => setModels(models.filter((_, j) => j !== i))}>
              Remove {row.model || 'this model'}
            </button>
          </div>
        ))}
        <button type="button" class="secondary" onClick={() => setModels([...models, { model: '', limits: {} }])}>
          Add a model limit
        </button>
      </fieldset>
      <fieldset>
        <legend>Limits for each end user</legend>
        <LimitInputs prefix="end_user_limits" typed={endUser} onChange={setEndUser} error={error} />
      </fieldset>
      <label>
        Allowed models (one name or pattern per line; blank: every model)
        <textarea
          name="allowed_models"
          rows={3}
          value={allowed}
          aria-invalid={named('allowed_models')}
          onInput={(e) => setAllowed((e.target as HTMLTextAreaElement).value)}
        />
        <FieldError error={error} field="allowed_models" />
      </label>
      <div class="actions">
        <button type="submit" disabled={saving}>
          {team ? 'Save team' : 'Create team'}
        </button>
        {onCancel && (
          <button type="button" class="secondary" onClick={onCancel}>
            Cancel
          </button>
        )}
      </div>
    </form>
  )
}
