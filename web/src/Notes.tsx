import type { ComponentChildren } from 'preact'
import type { ApiError } from './api.js'

/** What the gateway refused, in its own words, announced to screen readers; nothing without an error. */
export function ErrorNote({ error, id }: { error: ApiError | null; id?: string }) {
  if (!error) return null
  return (
    <p id={id} class="error" role="alert">
      {error.message}
    </p>
  )
}

/** A table's one row when it has none. */
export function EmptyRow({ columns, children }: { columns: number; children: ComponentChildren }) {
  return (
    <tr>
      <td colSpan={columns} class="muted">
        {children}
      </td>
    </tr>
  )
}
