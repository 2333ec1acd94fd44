import type { UpstreamConfig } from '../../src/config.js'

/** An upstream whose key pool the tests drive directly: made-up keys, one per budget (null: none); nothing listens at its address. */
export function poolUpstream(budgets: (number | null)[]): UpstreamConfig {
  return {
    name: 'nvidia',
    baseUrl: 'http://127.0.0.1:9/v1',
    apiKeys: budgets.map((_, i) => `nvapi-made-up-pool-key-${i}`),
    keyEnv: 'NVIDIA_API_KEY',
    keyBudgets: budgets,
    statusUrl: 'http://127.0.0.1:9/status',
    timeouts: { connectMs: 1_000, headersMs: 1_000, idleMs: 1_000 },
    retries: 0,
    retryBaseMs: 1,
    keyWaitMs: 0,
  }
}
