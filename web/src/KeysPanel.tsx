import { useEffect, useState } from 'preact/hooks'
import { ApiError, api } from './api.js'
import { formatTime } from './format.js'
import type { ApiKey, List } from './types.js'
import { ErrorNote, EmptyRow } from './Notes.js'

type Created = ApiKey & { key: string }

function keyState(k: ApiKey): string {
  if (k.revoked_at) return 'revoked'
  if (k.expires_at && Date.parse(k.expires_at) <= Date.now()) return 'expired'
  if (k.replaced_by) return 'rotating out'
  return 'active'
}

/** The plaintext of a key just made: shown this once, with a copy button. */
function NewKey({ created, onDone }: { created: Created; onDone: () => void }) {
  const [copied, setCopied] = useState(false)
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(created.key)
      setCopied(true)
    } catch {
      // No clipboard (a page not served over TLS or localhost): the reader selects the text.
      const range = document.createRange()
      range.selectNodeContents(document.getElementById('new-key-value')!)
      getSelection()?.removeAllRanges()
      getSelection()?.addRange(range)
    }
  }
  return (
    <div class="new-key" role="status">
      <p>
        <strong>Copy this key now.</strong> It is shown only this once; the gateway keeps only its hash.
      </p>
      <code id="new-key-value" data-key-id={created.id}>
        {created.key}
      </code>
      <div class="actions">
        <button type="button" onClick={() => void copy()}>
          {copied ? 'Copied' : 'Copy key'}
        </button>
        <button type="button" class="secondary" onClick={onDone}>
          Done
        </button>
      </div>
    </div>
  )
}

/** A team's keys: hint, name, dates and state; create, rotate (with a grace period) and revoke (after a confirmation). */
export function KeysPanel({ team }: { team: string }) {
  const [keys, setKeys] = useState<ApiKey[] | null>(null)
  const [error, setError] = useState<ApiError | null>(null)
  const [created, setCreated] = useState<Created | null>(null)
  const [name, setName] = useState('')
  const [expires, setExpires] = useState('')
  const [confirming, setConfirming] = useState<string | null>(null)
  const [rotating, setRotating] = useState<string | null>(null)
  const [grace, setGrace] = useState('86400')

  const load = () =>
    api<List<ApiKey>>('GET', `/admin/teams/${encodeURIComponent(team)}/keys`).then(
      (r) => setKeys(r.data),
      (e: ApiError) => setError(e),
    )
  useEffect(() => void load(), [team])

  const act = async (work: () => Promise<void>) => {
    setError(null)
    try {
      await work()
      await load()
    } catch (err) {
      setError(err as ApiError)
    }
  }
  const create = (e: Event) => {
    e.preventDefault()
    void act(async () => {
      const body = { name: name.trim() === '' ? null : name.trim(), expires_at: expires === '' ? null : new Date(expires).toISOString() }
      setCreated(await api<Created>('POST', `/admin/teams/${encodeURIComponent(team)}/keys`, body))
      setName('')
      setExpires('')
    })
  }
  const rotate = (id: string) =>
    act(async () => {
      const seconds = grace.trim() === '' ? undefined : Number(grace)
      setCreated(await api<Created>('POST', `/admin/keys/${id}/rotate`, seconds === undefined ? {} : { grace_seconds: seconds }))
      setRotating(null)
    })
  const revoke = (id: string) =>
    act(async () => {
      await api('DELETE', `/admin/keys/${id}`)
      setConfirming(null)
    })

  return (
    <section aria-labelledby="keys-title">
      <h2 id="keys-title">Keys</h2>
      {created && <NewKey created={created} onDone={() => setCreated(null)} />}
      <ErrorNote error={error} />
      <form class="inline-form" onSubmit={create} aria-label="New key">
        <label>
          Key name
          <input name="key-name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <label>
          Expires (optional)
          <input
            name="key-expires"
            type="datetime-local"
            value={expires}
            onInput={(e) => setExpires((e.target as HTMLInputElement).value)}
          />
        </label>
        <button type="submit">Create key</button>
      </form>
      <div class="table-wrap">
        <table class="keys-table">
          <caption>Keys of team {team}</caption>
          <thead>
            <tr>
              <th scope="col">Hint</th>
              <th scope="col">Name</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">State</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {(keys ?? []).map((k) => {
              const state = keyState(k)
              const live = state === 'active' || state === 'rotating out'
              return (
                <tr key={k.id} data-key-id={k.id}>
                  <td>
                    <code>{k.hint}</code>
                  </td>
                  <td>{k.name ?? '—'}</td>
                  <td>{formatTime(k.created_at)}</td>
                  <td>{formatTime(k.last_used_at)}</td>
                  <td>{formatTime(k.expires_at)}</td>
                  <td data-col="state">{state}</td>
                  <td class="row-actions">
                    {live && confirming === k.id && (
                      <span>
                        Revoke {k.hint}? Requests with it fail at once.{' '}
                        <button type="button" class="danger" onClick={() => void revoke(k.id)}>
                          Confirm revoke
                        </button>{' '}
                        <button type="button" class="secondary" onClick={() => setConfirming(null)}>
                          Cancel
                        </button>
                      </span>
                    )}
                    {live && rotating === k.id && (
                      <span>
                        <label>
                          Grace period (seconds)
                          <input
                            name="grace"
                            inputMode="numeric"
                            value={grace}
                            onInput={(e) => setGrace((e.target as HTMLInputElement).value)}
                          />
                        </label>{' '}
                        <button type="button" onClick={() => void rotate(k.id)}>
                          Confirm rotate
                        </button>{' '}
                        <button type="button" class="secondary" onClick={() => setRotating(null)}>
                          Cancel
                        </button>
                      </span>
                    )}
                    {live && confirming !== k.id && rotating !== k.id && state === 'active' && (
                      <span>
                        <button type="button" class="secondary" onClick={() => setRotating(k.id)} aria-label={`Rotate ${k.hint}`}>
                          Rotate
                        </button>{' '}
                        <button type="button" class="danger" onClick={() => setConfirming(k.id)} aria-label={`Revoke ${k.hint}`}>
                          Revoke
                        </button>
                      </span>
                    )}
                    {state === 'rotating out' && confirming !== k.id && (
                      <button type="button" class="danger" onClick={() => setConfirming(k.id)} aria-label={`Revoke ${k.hint}`}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              )
            })}
            {keys !== null && keys.length === 0 && <EmptyRow columns={7}>No keys yet.</EmptyRow>}
          </tbody>
        </table>
      </div>
    </section>
  )
}
