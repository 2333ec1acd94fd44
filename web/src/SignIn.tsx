import { useState } from 'preact/hooks'
import { ApiError, api, type Session } from './api.js'
import { ErrorNote } from './Notes.js'

/**
 * One form for both: the admin token opens the admin console, a client key its team's view. The
 * secret goes to the gateway once, for a session cookie; the page keeps nothing of it.
 */
export function SignIn({ onSignedIn, notice }: { onSignedIn: (session: Session) => void; notice?: string | null }) {
  const [token, setToken] = useState('')
  const [error, setError] = useState<ApiError | null>(null)
  const [busy, setBusy] = useState(false)
  const submit = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    setError(null)
    try {
      const session = await api<Session>('POST', '/console/api/session', { token })
      setToken('')
      onSignedIn(session)
    } catch (err) {
      setError(err as ApiError)
    } finally {
      setBusy(false)
    }
  }
  return (
    <main id="main" class="sign-in">
      <h1>Tollgate console</h1>
      {notice && <p role="status">{notice}</p>}
      <form onSubmit={(e) => void submit(e)} class="card">
        <label for="token">Admin token or client key</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="current-password"
          required
          value={token}
          aria-invalid={error !== null}
          aria-describedby={error ? 'sign-in-error' : undefined}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <ErrorNote error={error} id="sign-in-error" />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <p class="muted">
          With the admin token: every team, key and upstream. With a client key (<code>tg-…</code>): that key's team only, read-only.
        </p>
      </form>
    </main>
  )
}
