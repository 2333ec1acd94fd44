/**
 * The shapes the admin API and the console API answer (docs/admin.md, docs/console.md): the
 * server's own types where they exist, so the page cannot drift from them. LIMIT_NAMES is a value
 * the page needs at run time; the check below holds it to the server's list.
 */
import type { LimitName as ServerLimitName, Limits } from '../../src/limits.js'
import type { ScopeStatus, UsageRow } from '../../src/quota/types.js'
import type { KeyError } from '../../src/upstream/key-events.js'
import type { KeyState } from '../../src/upstream/key-pool.js'

export type { Limits, ScopeStatus, UsageRow }

export const LIMIT_NAMES = [
  'requests_per_minute',
  'tokens_per_minute',
  'tokens_per_day',
  'tokens_per_month',
  'concurrent_requests',
  'usd_per_day',
  'usd_per_month',
] as const
export type LimitName = (typeof LIMIT_NAMES)[number]
// Each list holds the other's names: a limit added on the server fails the page's typecheck until it is here.
const _sameNames: [LimitName, ServerLimitName] extends [ServerLimitName, LimitName] ? true : never = true
void _sameNames

export const LIMIT_LABELS: Record<LimitName, string> = {
  requests_per_minute: 'Requests / min',
  tokens_per_minute: 'Tokens / min',
  tokens_per_day: 'Tokens / day',
  tokens_per_month: 'Tokens / month',
  concurrent_requests: 'Concurrent requests',
  usd_per_day: 'USD / day',
  usd_per_month: 'USD / month',
}

export interface Quota {
  team: ScopeStatus
  models: Record<string, ScopeStatus>
  key?: ScopeStatus
}

export interface Team {
  id: string
  name: string
  limits: Limits
  model_limits: Record<string, Limits>
  allowed_models: string[] | null
  end_user_limits: Limits
  created_at?: string
  updated_at?: string
  quota?: Quota
}

export interface ApiKey {
  id: string
  team: string
  name: string | null
  hint: string
  created_at: string
  expires_at: string | null
  revoked_at: string | null
  last_used_at: string | null
  replaced_by: string | null
}

export interface UpstreamKey {
  hint: string
  fingerprint: string
  state: KeyState
  budget_rpm: number | null
  recent_errors: KeyError[]
}

export interface Upstream {
  name: string
  base_url: string
  keys: UpstreamKey[]
}

export interface List<T> {
  data: T[]
}
