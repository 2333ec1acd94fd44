import { parseArgs } from 'node:util'

/**
 * The admin CLI: a thin client of the admin API. Reads TOLLGATE_URL (default
 * http://127.0.0.1:8080) and ADMIN_TOKEN. Prints the API's JSON answers; exits 1 when the API
 * refuses, 2 on a usage error.
 */

export const USAGE = `Usage: tollgate <command>

  teams create <id> [--name NAME] [--limits JSON] [--allowed-models LIST] [--end-user-limits JSON]
  teams list
  teams get <id>
  teams update <id> [--name NAME] [--limits JSON] [--allowed-models LIST | --all-models] [--end-user-limits JSON]
  teams delete <id>
  keys create --team <id> [--name NAME] [--expires-at ISO-8601] [--limits JSON] [--allowed-models LIST]
  keys list --team <id>
  keys update <key-id> [--name NAME] [--limits JSON] [--allowed-models LIST | --all-models]
  keys rotate <key-id> [--grace-seconds N]
  keys revoke <key-id>
  usage [--team ID] [--key KEY-ID] [--model NAME] [--end-user ID] [--from YYYY-MM-DD] [--to YYYY-MM-DD]
        [--group-by day,hour,model,key,end_user] [--format json|csv]

Environment: TOLLGATE_URL (default http://127.0.0.1:8080), ADMIN_TOKEN (required).
--limits takes JSON, e.g. '{"requests_per_minute":100,"tokens_per_day":2000000}'; null removes one.
--allowed-models takes model names and patterns, comma-separated, e.g. 'minimaxai/*,meta/llama-3.1-*';
--all-models lets every model through again.
`

export interface CliIO {
  stdout: (text: string) => void
  stderr: (text: string) => void
}

const defaultIO: CliIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
}

class UsageError extends Error {}

interface Call {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE'
  path: string
  body?: Record<string, unknown>
}

function parseLimits(raw: string | undefined, option = '--limits'): Record<string, unknown> | undefined {
  if (raw === undefined) return undefined
  try {
    const value = JSON.parse(raw) as unknown
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>
  } catch {
    // reported below
  }
  throw new UsageError(`${option} must be a JSON object, got ${raw}`)
}

interface FieldOptions {
  name?: string
  limits?: string
  'allowed-models'?: string
  'all-models'?: boolean
  'end-user-limits'?: string
}

/** --name, --limits, --allowed-models (or --all-models) and --end-user-limits as the fields of a body. */
function fields(values: FieldOptions): Record<string, unknown> {
  const limits = parseLimits(values.limits)
  const endUserLimits = parseLimits(values['end-user-limits'], '--end-user-limits')
  const allowed = values['allowed-models']
  if (allowed !== undefined && values['all-models']) throw new UsageError('give --allowed-models or --all-models, not both')
  return {
    ...(values.name ? { name: values.name } : {}),
    ...(limits ? { limits } : {}),
    ...(allowed !== undefined
      ? {
          allowed_models: allowed
            .split(',')
            .map((m) => m.trim())
            .filter(Boolean),
        }
      : {}),
    ...(values['all-models'] ? { allowed_models: null } : {}),
    ...(endUserLimits ? { end_user_limits: endUserLimits } : {}),
  }
}

/** The fields of an update, at least one. */
function changes(values: FieldOptions): Record<string, unknown> {
  const body = fields(values)
  if (Object.keys(body).length === 0) throw new UsageError('give --name, --limits, --allowed-models, --all-models or --end-user-limits')
  return body
}

function one(positionals: string[], what: string): string {
  const [value, ...rest] = positionals
  if (value === undefined) throw new UsageError(`missing ${what}`)
  if (rest.length > 0) throw new UsageError(`unexpected arguments: ${rest.join(' ')}`)
  return value
}

/** `usage [--team …] [--from …] …`: the admin usage report, its options as the query. */
function usageCall(argv: string[]): Call {
  const verb = argv[1]
  if (verb !== undefined && !verb.startsWith('-')) throw new UsageError(`unexpected arguments: ${verb}`)
  const { values: q } = parseArgs({
    args: argv.slice(1),
    strict: true,
    options: Object.fromEntries(
      ['team', 'key', 'model', 'end-user', 'from', 'to', 'group-by', 'format'].map((o) => [o, { type: 'string' as const }]),
    ),
  })
  const query = new URLSearchParams()
  for (const [option, value] of Object.entries(q)) if (typeof value === 'string') query.set(option.replace('-', '_'), value)
  const qs = query.toString()
  return { method: 'GET', path: `/admin/usage${qs ? `?${qs}` : ''}` }
}

/** Turns the command line into one admin API call. */
export function planCall(argv: string[]): Call {
  const [noun, verb, ...rest] = argv
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: {
      name: { type: 'string' },
      limits: { type: 'string' },
      team: { type: 'string' },
      'expires-at': { type: 'string' },
      key: { type: 'string' },
      model: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      'group-by': { type: 'string' },
      format: { type: 'string' },
      'grace-seconds': { type: 'string' },
      'allowed-models': { type: 'string' },
      'all-models': { type: 'boolean' },
      'end-user-limits': { type: 'string' },
    },
  })
  const enc = encodeURIComponent
  if (noun === 'usage') return usageCall(argv)
  const key = `${noun ?? ''} ${verb ?? ''}`
  switch (key) {
    case 'teams create':
      if (values['all-models']) throw new UsageError('a new team lets every model through unless given --allowed-models')
      return { method: 'POST', path: '/admin/teams', body: { id: one(positionals, 'team id'), ...fields(values) } }
    case 'teams list':
      if (positionals.length > 0) throw new UsageError(`unexpected arguments: ${positionals.join(' ')}`)
      return { method: 'GET', path: '/admin/teams' }
    case 'teams get':
      return { method: 'GET', path: `/admin/teams/${enc(one(positionals, 'team id'))}` }
    case 'teams update':
      return { method: 'PATCH', path: `/admin/teams/${enc(one(positionals, 'team id'))}`, body: changes(values) }
    case 'teams delete':
      return { method: 'DELETE', path: `/admin/teams/${enc(one(positionals, 'team id'))}` }
    case 'keys create': {
      if (!values.team) throw new UsageError('keys create needs --team <id>')
      if (positionals.length > 0) throw new UsageError(`unexpected arguments: ${positionals.join(' ')}`)
      if (values['all-models']) throw new UsageError("a new key lets all its team's models through unless given --allowed-models")
      return {
        method: 'POST',
        path: `/admin/teams/${enc(values.team)}/keys`,
        body: { ...fields(values), ...(values['expires-at'] ? { expires_at: values['expires-at'] } : {}) },
      }
    }
    case 'keys update':
      return { method: 'PATCH', path: `/admin/keys/${enc(one(positionals, 'key id'))}`, body: changes(values) }
    case 'keys list':
      if (!values.team) throw new UsageError('keys list needs --team <id>')
      return { method: 'GET', path: `/admin/teams/${enc(values.team)}/keys` }
    case 'keys rotate': {
      const grace = values['grace-seconds']
      if (grace !== undefined && !/^\d+$/.test(grace)) throw new UsageError('--grace-seconds takes a whole number of seconds')
      return {
        method: 'POST',
        path: `/admin/keys/${enc(one(positionals, 'key id'))}/rotate`,
        body: grace === undefined ? {} : { grace_seconds: Number(grace) },
      }
    }
    case 'keys revoke':
      return { method: 'DELETE', path: `/admin/keys/${enc(one(positionals, 'key id'))}` }
    default:
      throw new UsageError(noun ? `unknown command: ${argv.slice(0, 2).join(' ')}` : 'no command given')
  }
}

export async function main(argv: string[], env: Record<string, string | undefined>, io: CliIO = defaultIO): Promise<number> {
  if (argv.length === 0 || argv[0] === 'help' || argv.includes('--help') || argv.includes('-h')) {
    io.stdout(USAGE)
    return argv.length === 0 ? 2 : 0
  }
  let call: Call
  try {
    call = planCall(argv)
  } catch (err) {
    io.stderr(`tollgate: ${(err as Error).message}\n\n${USAGE}`)
    return 2
  }
  const token = env.ADMIN_TOKEN?.trim()
  if (!token) {
    io.stderr("tollgate: ADMIN_TOKEN is not set; it must be the gateway's admin token\n")
    return 2
  }
  const base = (env.TOLLGATE_URL?.trim() || 'http://127.0.0.1:8080').replace(/\/+$/, '')

  let res: Response
  try {
    res = await fetch(base + call.path, {
      method: call.method,
      headers: { authorization: `Bearer ${token}`, ...(call.body ? { 'content-type': 'application/json' } : {}) },
      body: call.body ? JSON.stringify(call.body) : undefined,
    })
  } catch (err) {
    io.stderr(
      `tollgate: cannot reach the gateway at ${base}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}\n`,
    )
    return 1
  }
  const text = await res.text()
  if (!res.ok) {
    let message = text
    try {
      message = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? text
    } catch {
      // not JSON: print as is
    }
    io.stderr(`tollgate: ${res.status}: ${message}\n`)
    return 1
  }
  if (res.status === 204) {
    io.stdout(`${call.method === 'DELETE' && call.path.startsWith('/admin/keys/') ? 'revoked' : 'deleted'}\n`)
    return 0
  }
  if (!(res.headers.get('content-type') ?? '').includes('json')) {
    io.stdout(text) // CSV and the like, as sent
    return 0
  }
  const data = JSON.parse(text) as Record<string, unknown>
  io.stdout(`${JSON.stringify(data, null, 2)}\n`)
  if (typeof data.key === 'string') io.stderr('Store this key now: the gateway keeps only its hash and cannot show it again.\n')
  return 0
}
