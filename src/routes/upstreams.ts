import type { FastifyPluginAsync } from 'fastify'
import type { UpstreamClient } from '../upstream/client.js'
import { fingerprint, type KeyPool } from '../upstream/key-pool.js'

/** What GET /admin/upstreams reads: each upstream's client and the pool its keys are picked from. */
export interface UpstreamsView {
  clients: Map<string, UpstreamClient>
  pools: Map<string, KeyPool>
}

/**
 * A key's hint: its first characters up to a dash, and its last four (`nvapi-…abcd`); never more
 * of the secret. With the fingerprint the logs and metrics use, enough to tell keys apart.
 */
export function upstreamKeyHint(key: string): string {
  const dash = key.indexOf('-')
  const prefix = dash > 0 && dash <= 8 ? key.slice(0, dash + 1) : ''
  return key.length < 12 ? `${prefix}…` : `${prefix}…${key.slice(-4)}`
}

/**
 * GET /admin/upstreams: each upstream with its keys: hint, fingerprint, state (available,
 * cooling down after a 429, at its per-minute budget, refused by the upstream; shared across
 * instances in Redis), budget, and the last errors this instance saw with it.
 */
export const upstreamRoutes: FastifyPluginAsync<UpstreamsView & { now: () => number }> = async (app, { clients, pools, now }) => {
  app.get('/admin/upstreams', async () => {
    const at = now()
    const data = await Promise.all(
      [...clients.values()].map(async (client) => {
        const pool = pools.get(client.name)
        const states = pool ? await pool.keyStates(at) : []
        return {
          object: 'upstream',
          name: client.name,
          base_url: client.config.baseUrl,
          keys: client.config.apiKeys.map((key, i) => ({
            hint: upstreamKeyHint(key),
            fingerprint: fingerprint(key),
            state: states[i] ?? 'available',
            budget_rpm: client.config.keyBudgets[i] ?? null,
            recent_errors: client.keyErrors.of(i),
          })),
        }
      }),
    )
    return { object: 'list', data }
  })
}
