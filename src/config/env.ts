/** Reading environment variables: each problem goes to `problems`, and a fallback is used meanwhile. */

export type Env = Record<string, string | undefined>

export function parseKeys(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0)
}

export function intFromEnv(env: Env, name: string, fallback: number, min: number, max: number, problems: string[]): number {
  const raw = env[name]
  if (raw === undefined || raw.trim() === '') return fallback
  if (!/^\d+$/.test(raw.trim())) {
    problems.push(`${name}: must be a whole number, got ${JSON.stringify(raw)}`)
    return fallback
  }
  const value = Number(raw)
  if (value < min || value > max) problems.push(`${name}: must be between ${min} and ${max}, got ${value}`)
  return value
}

export function urlFromEnv(env: Env, name: string, protocols: string[], problems: string[]): string | null {
  const raw = env[name]?.trim()
  if (!raw) return null
  try {
    const url = new URL(raw)
    if (!protocols.includes(url.protocol)) {
      problems.push(`${name}: must use ${protocols.join(' or ')}, got ${JSON.stringify(url.protocol)}`)
    }
  } catch {
    problems.push(`${name}: not a valid URL`)
  }
  return raw
}

/** `host:port,host:port`: the seed nodes of a Redis Cluster. */
export function parseClusterNodes(raw: string | undefined, problems: string[]): { host: string; port: number }[] | null {
  if (!raw?.trim()) return null
  const nodes: { host: string; port: number }[] = []
  for (const part of raw
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const match = /^(.+):(\d{1,5})$/.exec(part)
    const port = match ? Number(match[2]) : NaN
    if (!match || port < 1 || port > 65_535) problems.push(`REDIS_CLUSTER_NODES: ${JSON.stringify(part)} is not host:port`)
    else nodes.push({ host: match[1]!, port })
  }
  return nodes.length > 0 ? nodes : null
}

/**
 * Which X-Forwarded-For entries to believe. `true` means one proxy in front (Fastify's own `true`
 * believes every entry, so any client could name its own address, and escape the failed-auth
 * limit with a new one on every try): a hop count or the proxies' addresses say more.
 */
export function parseTrustProxy(raw: string | undefined): boolean | number | string {
  const value = raw?.trim()
  if (!value || value === 'false') return false
  if (value === 'true') return 1
  if (/^\d+$/.test(value)) return Number(value)
  return value
}
