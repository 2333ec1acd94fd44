import { formatLimit } from './format.js'
import { LIMIT_LABELS, LIMIT_NAMES, type ScopeStatus } from './types.js'

/** Each limit of a scope as a bar: how much is used (and held by requests in flight) of the limit. */
export function LimitBars({ status, label }: { status: ScopeStatus | undefined; label: string }) {
  const names = LIMIT_NAMES.filter((n) => status?.[n] !== undefined)
  if (!status || names.length === 0) return <p class="muted">No limits.</p>
  return (
    <ul class="bars" aria-label={label}>
      {names.map((name) => {
        const use = status[name]!
        const taken = use.used + (use.in_flight ?? 0)
        const share = use.limit === 0 ? 1 : Math.min(1, taken / use.limit)
        const level = share >= 0.9 ? 'high' : share >= 0.6 ? 'mid' : 'low'
        return (
          <li key={name} data-limit={name}>
            <span class="bar-label">{LIMIT_LABELS[name]}</span>
            <span
              class={`bar bar-${level}`}
              role="meter"
              aria-label={`${label}: ${LIMIT_LABELS[name]}`}
              aria-valuemin={0}
              aria-valuemax={use.limit}
              aria-valuenow={Math.min(taken, use.limit)}
              aria-valuetext={`${formatLimit(name, taken)} of ${formatLimit(name, use.limit)}`}
            >
              <span class="bar-fill" style={{ width: `${(share * 100).toFixed(1)}%` }} />
            </span>
            <span class="bar-value">
              {formatLimit(name, use.used)}
              {use.in_flight ? ` (+${formatLimit(name, use.in_flight)} in flight)` : ''} / {formatLimit(name, use.limit)}
            </span>
          </li>
        )
      })}
    </ul>
  )
}
