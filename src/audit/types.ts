/** One line of the audit trail: a request that was admitted, as it ended. */
export interface AuditEntry {
  team: string
  key_id: string
  /** The end user the request named (`safety_identifier` or `user`); '' for none. */
  end_user: string
  model: string
  endpoint: string
  status: number
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  estimated: boolean
  /** What it cost, in USD (0 for a model without a price). */
  cost_usd: number
  latency_ms: number
  request_id: string
  time: string
}

/** Where the audit trail goes: a Redis stream (audit/redis.ts), or nowhere without Redis. */
export interface AuditLog {
  /** Adds an entry; the entries are written in batches. Rejects only if its batch's write fails and nothing keeps it. */
  write(entry: AuditEntry): Promise<void>
  /** Writes what waits now (at shutdown). */
  flush(): Promise<void>
}

/** Without Redis there is no audit trail (the request log lines still say what each request did). */
export const NO_AUDIT: AuditLog = {
  write: () => Promise.resolve(),
  flush: () => Promise.resolve(),
}
