/** The shapes the admin API and the console API answer (docs/admin.md, docs/console.md). */

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
export type Limits = Partial<Record<LimitName, number>>

export const LIMIT_LABELS: Record<LimitName, string> = {
  requests_per_minute: 'Requests / min',
  tokens_per_minute: 'Tokens / min',
  tokens_per_day: 'Tokens / day',
  tokens_per_month: 'Tokens / month',
  concurrent_requests: 'Concurrent requests',
  usd_per_day: 'USD / day',
  usd_per_month: 'USD / month',
}

export interface LimitUse {
  limit: number
  used: number
  remaining: number
  in_flight?: number
}
export type ScopeStatus = Partial<Record<LimitName, LimitUse>>

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

export interface UsageRow {
  team: string
  day?: string
  hour?: string
  model?: string
  key?: string
  end_user?: string
  requests: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  estimated_requests: number
  cost_usd: number
}

export interface UpstreamKey {
  hint: string
  fingerprint: string
  state: 'available' | 'cooling' | 'at_budget' | 'refused'
  budget_rpm: number | null
  recent_errors: { at: string; status: number; model: string }[]
}

export interface Upstream {
  name: string
  base_url: string
  keys: UpstreamKey[]
}

export interface List<T> {
  data: T[]
}
