import { randomBytes } from 'node:crypto'
import type { Config } from './config.js'
import { newKey } from './routes/admin.js'
import type { Store } from './store/types.js'

/**
 * A first run (`npm start` with nothing configured) that a client can use at once. On the
 * embedded store and without ADMIN_TOKEN, the gateway makes an admin token for this process alone,
 * and a team `default` with one key, and prints both once, on standard error (never in a log
 * line). Nothing of it outlives the process, as nothing on the embedded store does; with Redis, or
 * with ADMIN_TOKEN set, none of this happens.
 */

export function isFirstRun(config: Config): boolean {
  return config.adminToken === null && config.redisUrl === null && config.redisClusterNodes === null
}

/** The config with an admin token of its own, for a first run. */
export function withFirstRunToken(config: Config): Config {
  return { ...config, adminToken: randomBytes(32).toString('hex') }
}

/** Creates team `default` and a key of it; returns the key's plaintext. */
export async function firstRunKey(store: Store, now: number): Promise<string> {
  const at = new Date(now).toISOString()
  await store.createTeam({
    id: 'default',
    name: 'First team',
    limits: {},
    model_limits: {},
    allowed_models: null,
    end_user_limits: {},
    created_at: at,
    updated_at: at,
  })
  const { record, plaintext } = newKey('default', { name: 'first run', limits: {}, allowed_models: null, expires_at: null }, at)
  if (!(await store.createKey(record))) throw new Error('first run: could not create a key')
  return plaintext
}

/** What to try first, with the admin token and the key. */
export function firstRunNote(config: Config, port: number, key: string): string {
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host
  return [
    '',
    'tollgate: first run (no ADMIN_TOKEN, no REDIS_URL): made for this process only, shown once:',
    `  admin token:             ${config.adminToken}`,
    `  key of team 'default':   ${key}`,
    '',
    '  Try it:',
    `  curl http://${host}:${port}/v1/chat/completions -H "Authorization: Bearer ${key}" -H "Content-Type: application/json" \\`,
    `    -d '{"model":"minimaxai/minimax-m2.1","messages":[{"role":"user","content":"Hello!"}]}'`,
    '',
    `  Web console: http://${host}:${port}/console (sign in with the admin token or the key)`,
    '',
    '  Set ADMIN_TOKEN (and REDIS_URL) for teams and keys that last.',
    '',
    '',
  ].join('\n')
}
