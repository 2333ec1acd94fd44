import type { AuditEntry } from '../../src/audit/types.js'

/** The i-th made-up audit entry: request `req-<i>` at 12:00:00 plus i ms, with tokens i, 2i and 3i. */
export const auditEntry = (i: number, estimated = false): AuditEntry => ({
  time: new Date(Date.UTC(2026, 2, 10, 12, 0, 0, i)).toISOString(),
  request_id: `req-${i}`,
  team: 'ml',
  key_id: 'key_1',
  end_user: i % 3 === 0 ? '' : `user-${i % 3}`,
  model: 'm',
  endpoint: 'chat',
  status: 200,
  prompt_tokens: i,
  completion_tokens: 2 * i,
  total_tokens: 3 * i,
  estimated,
  cost_usd: i / 1e6,
  latency_ms: 10 + i,
})
