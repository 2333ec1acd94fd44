import { useEffect, useState } from 'preact/hooks'
import { ApiError, api } from './api.js'
import { formatTime } from './format.js'
import type { List, Upstream } from './types.js'
import { ErrorNote } from './Notes.js'

const STATE_LABELS = { available: 'active', cooling: 'cooling down', at_budget: 'at its budget', refused: 'refused' } as const

/** The upstream key pools: each key's hint, state and the last errors seen with it. */
export function UpstreamsPage() {
  const [upstreams, setUpstreams] = useState<Upstream[] | null>(null)
  const [error, setError] = useState<ApiError | null>(null)
  useEffect(() => {
    api<List<Upstream>>('GET', '/admin/upstreams').then(
      (r) => setUpstreams(r.data),
      (e: ApiError) => setError(e),
    )
  }, [])
  return (
    <>
      <h1>Upstreams</h1>
      <ErrorNote error={error} />
      {(upstreams ?? []).map((u) => (
        <section key={u.name} class="card" aria-labelledby={`up-${u.name}`}>
          <h2 id={`up-${u.name}`}>
            {u.name} <span class="muted">{u.base_url}</span>
          </h2>
          {u.keys.length === 0 ? (
            <p class="muted">No keys: requests to this upstream are refused with upstream_not_configured.</p>
          ) : (
            <div class="table-wrap">
              <table>
                <caption>Keys of {u.name}</caption>
                <thead>
                  <tr>
                    <th scope="col">Hint</th>
                    <th scope="col">Fingerprint</th>
                    <th scope="col">State</th>
                    <th scope="col">Budget / min</th>
                    <th scope="col">Recent errors (this instance)</th>
                  </tr>
                </thead>
                <tbody>
                  {u.keys.map((k) => (
                    <tr key={k.fingerprint}>
                      <td>
                        <code>{k.hint}</code>
                      </td>
                      <td>
                        <code>{k.fingerprint}</code>
                      </td>
                      <td data-col="state">{STATE_LABELS[k.state]}</td>
                      <td>{k.budget_rpm ?? '—'}</td>
                      <td>
                        {k.recent_errors.length === 0
                          ? 'none'
                          : k.recent_errors.slice(0, 3).map((e) => (
                              <div key={e.at + e.status}>
                                {e.status} at {formatTime(e.at)} ({e.model})
                              </div>
                            ))}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>
      ))}
    </>
  )
}
