import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Command, type Cluster, type Redis } from 'ioredis'
import { daysBetween, dayEnd, monthEnd, utcDay, utcMonth } from './periods.js'
import { aggregateUsage, usageField } from './report.js'
import { describeStatus, refill } from './status.js'
import {
  LEASE_MS,
  MINUTE_MS,
  type Admission,
  type AdmitResult,
  type AuditEntry,
  type LimitKind,
  type QuotaEngine,
  type RateState,
  type Scope,
  type ScopeStatus,
  type Settlement,
  type Ticket,
  type UsageQuery,
  type UsageRow,
} from './types.js'

/**
 * Quotas in Redis, exact across any number of gateway instances: each admission is one Lua script
 * (every check of every scope, then every write, in one round trip), each settlement another.
 *
 * Why not @fastify/rate-limit for the request rate: its Redis store counts a fixed window
 * (INCR + PEXPIRE), which lets twice the limit through across a window boundary, and a separate
 * call for it would cost a second round trip and could not be atomic with the token and
 * concurrency checks: a request it counted could still be refused by the token check. The gateway
 * uses @fastify/rate-limit where its model fits: failed authentications per client IP.
 *
 * Keys (all of one team under the hash tag {t:<team>}, so the scripts run on a Redis Cluster):
 *   <prefix>{t:<team>}:<scope>:rpm|tpm|inflight|reserved
 *   <prefix>{t:<team>}:<scope>:d:<YYYY-MM-DD>   <prefix>{t:<team>}:<scope>:m:<YYYY-MM>
 *   <prefix>{t:<team>}:usage:<YYYY-MM-DD>        usage counters (see report.ts)
 *   <prefix>audit                                 the audit stream (capped; written in batches)
 */

const DAY_MS = 86_400_000
/** How long a settlement is remembered, so one sent twice (after a lost reply) counts once. */
const SETTLED_MARKER_MS = 6 * 3_600_000
const NONE = -1
/** Audit entries per script call, the longest an entry waits, and the values per entry. */
const AUDIT_BATCH = 64
const AUDIT_DELAY_MS = 20
const AUDIT_WIDTH = 24
const NOTHING = Promise.resolve()

type Args = (string | number)[]
type Script = (...args: Args) => Promise<unknown>

function load(name: string): string {
  return readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8')
}

export interface RedisQuotasOptions {
  client: Redis | Cluster
  prefix?: string
  /** How long usage counters are kept. */
  usageRetentionDays?: number
  /** Approximate cap of the audit stream (XADD MAXLEN ~). */
  auditMaxLen?: number
}

export class RedisQuotas implements QuotaEngine {
  private readonly client: Redis | Cluster
  private readonly prefix: string
  private readonly retentionMs: number
  private readonly auditMaxLen: number
  private readonly admitScript: Script
  private readonly settleScript: Script
  private readonly auditScript: Script
  /** Audit entries not yet written, flattened (AUDIT_WIDTH values each). */
  private auditBatch: (string | number)[] = []
  private auditTimer: NodeJS.Timeout | null = null
  /** Settles the promise of the call that opened the batch waiting now. */
  private auditDone: { resolve: () => void; reject: (err: unknown) => void } | null = null

  constructor(options: RedisQuotasOptions) {
    this.client = options.client
    this.prefix = options.prefix ?? 'tg:'
    this.retentionMs = (options.usageRetentionDays ?? 400) * DAY_MS
    this.auditMaxLen = options.auditMaxLen ?? 100_000
    const commands = this.client as unknown as Record<string, Script>
    const script = (name: string): Script => {
      const lua = load(name)
      this.client.defineCommand(`tollgate_${name}`, { lua })
      const pipelined = (args: Args) => commands[`tollgate_${name}`]!.call(this.client, ...args)
      // Auto-pipelining (one write for the commands of a tick) pays under load, and costs a tick and
      // a pipeline when nothing else is waiting: a call while no other call of the same script is in
      // flight goes out at once (so at low load every admission does; see docs/benchmarks.md).
      if (!(this.client.options as { enableAutoPipelining?: boolean }).enableAutoPipelining) return (...args) => pipelined(args)
      const sha = createHash('sha1').update(lua).digest('hex')
      const direct = (args: Args): Promise<unknown> => {
        const evalsha = new Command('evalsha', [sha, ...args], { replyEncoding: 'utf8' })
        void this.client.sendCommand(evalsha)
        return evalsha.promise.catch((err: unknown) => {
          // A Redis that lost its scripts (restarted, SCRIPT FLUSH): send the source once more.
          if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
          return pipelined(args)
        })
      }
      let inFlight = 0 // calls of this script sent and not answered yet
      return (...args) => {
        const idle = inFlight === 0
        inFlight++
        return (idle ? direct(args) : pipelined(args)).finally(() => inFlight--)
      }
    }
    this.admitScript = script('admit')
    this.settleScript = script('settle')
    this.auditScript = script('audit')
  }

  private teamKey(team: string, suffix: string): string {
    return `${this.prefix}{t:${team}}:${suffix}`
  }

  private scopeKeys(team: string, scope: Scope, day: string, month: string): string[] {
    const base = `${scope.id}:`
    return ['rpm', 'tpm', `d:${day}`, `m:${month}`, 'inflight', 'reserved'].map((s) => this.teamKey(team, base + s))
  }

  async admit(a: Admission): Promise<AdmitResult> {
    const day = utcDay(a.now)
    const month = utcMonth(a.now)
    const keys = a.scopes.flatMap((s) => this.scopeKeys(a.team, s, day, month))
    const limits = a.scopes.flatMap((s) => [
      s.limits.requests_per_minute ?? NONE,
      s.limits.tokens_per_minute ?? NONE,
      s.limits.tokens_per_day ?? NONE,
      s.limits.tokens_per_month ?? NONE,
      s.limits.concurrent_requests ?? NONE,
    ])
    const reply = (await this.admitScript(
      keys.length, ...keys,
      a.now, a.requestId, a.tokens, a.now + LEASE_MS, dayEnd(a.now), monthEnd(a.now), a.scopes.length, ...limits,
    )) as (number | string)[]
    if (Number(reply[0]) === 1) {
      const [, rl, rr, rt, tl, tr, tt] = reply.map(Number) as number[]
      const rate: RateState = {}
      if (rl! >= 0) rate.requests = { limit: rl!, remaining: rr!, resetMs: rt! }
      if (tl! >= 0) rate.tokens = { limit: tl!, remaining: tr!, resetMs: tt! }
      return { ok: true, rate, ticket: { team: a.team, requestId: a.requestId, scopes: a.scopes, tokens: a.tokens, day, month } }
    }
    const [, index, kind, limit, used, retry, final] = reply
    const scope = a.scopes[Number(index) - 1]!
    const k = String(kind) as LimitKind
    const resetsAt = k === 'tokens_per_day' ? dayEnd(a.now) : k === 'tokens_per_month' ? monthEnd(a.now) : undefined
    return {
      ok: false,
      refusal: {
        kind: k,
        scope: scope.label,
        limit: Number(limit),
        used: Number(used),
        requested: k === 'requests' || k === 'concurrency' ? 1 : a.tokens,
        retryAfterMs: Number(retry),
        final: Number(final) === 1,
        ...(Number(final) === 1 && resetsAt !== undefined ? { resetsAt } : {}),
      },
    }
  }

  async settle(s: Settlement): Promise<void> {
    const { ticket, usage } = s
    const keys = ticket.scopes.flatMap((scope) => this.scopeKeys(ticket.team, scope, ticket.day, ticket.month))
    keys.push(this.teamKey(ticket.team, `usage:${ticket.day}`), this.teamKey(ticket.team, `settled:${ticket.requestId}`))
    const admittedAt = Date.parse(`${ticket.day}T00:00:00Z`)
    // Relative TTLs: the gateway's clock (injectable) decides the periods, Redis's only counts down.
    const ttl = (until: number) => Math.max(1_000, until - s.now)
    await this.settleScript(
      keys.length, ...keys,
      s.now, ticket.requestId, ticket.tokens, usage.total_tokens,
      ttl(dayEnd(admittedAt) + DAY_MS), ttl(monthEnd(admittedAt) + DAY_MS), ticket.scopes.length,
      ...ticket.scopes.map((scope) => scope.limits.tokens_per_minute ?? NONE),
      usageField(s.keyId, s.model), usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, s.estimated ? 1 : 0,
      ttl(admittedAt + this.retentionMs),
      SETTLED_MARKER_MS,
    )
  }

  async renew(tickets: Ticket[], now: number): Promise<void> {
    // One pipeline per team: a pipeline on a cluster must stay within one slot.
    const byTeam = new Map<string, Ticket[]>()
    for (const t of tickets) byTeam.set(t.team, [...(byTeam.get(t.team) ?? []), t])
    await Promise.all(
      [...byTeam].map(([team, list]) => {
        const pipeline = this.client.pipeline()
        for (const t of list) {
          for (const scope of t.scopes) {
            const inflight = this.teamKey(team, `${scope.id}:inflight`)
            pipeline.zadd(inflight, 'XX', now + LEASE_MS, t.requestId)
            pipeline.pexpire(inflight, LEASE_MS + MINUTE_MS)
            pipeline.pexpire(this.teamKey(team, `${scope.id}:reserved`), LEASE_MS + MINUTE_MS)
          }
        }
        return pipeline.exec()
      }),
    )
  }

  async status(team: string, scopes: Scope[], now: number): Promise<Record<string, ScopeStatus>> {
    if (scopes.length === 0) return {}
    const day = utcDay(now)
    const month = utcMonth(now)
    const pipeline = this.client.pipeline()
    for (const scope of scopes) {
      const [rpm, tpm, d, m, inflight, reserved] = this.scopeKeys(team, scope, day, month) as [string, string, string, string, string, string]
      pipeline.zcount(rpm, `(${now - MINUTE_MS}`, '+inf')
      pipeline.hmget(tpm, 'level', 'ts')
      pipeline.hget(d, 'used')
      pipeline.hget(m, 'used')
      pipeline.zcount(inflight, `(${now}`, '+inf')
      pipeline.hget(reserved, '_sum')
    }
    const results = ((await pipeline.exec()) ?? []).map(([err, value]) => {
      if (err) throw err
      return value
    })
    const out: Record<string, ScopeStatus> = {}
    scopes.forEach((scope, i) => {
      const [requests, bucket, d, m, inflight, reserved] = results.slice(i * 6, i * 6 + 6) as [number, (string | null)[], string | null, string | null, number, string | null]
      out[scope.id] = describeStatus(scope.limits, {
        requests,
        tokensMinute: (limit) => {
          if (bucket[0] === null || bucket[0] === undefined) return 0
          return Math.ceil(limit - refill(Number(bucket[0]), Number(bucket[1]), limit, now))
        },
        day: Number(d ?? 0),
        month: Number(m ?? 0),
        inflight,
        reserved: Math.max(0, Number(reserved ?? 0)),
      })
    })
    return out
  }

  async usage(q: UsageQuery): Promise<UsageRow[]> {
    const days = daysBetween(q.from, q.to)
    const sources = await Promise.all(
      q.teams.map(async (team) => {
        const pipeline = this.client.pipeline()
        for (const day of days) pipeline.hgetall(this.teamKey(team, `usage:${day}`))
        const results = (await pipeline.exec()) ?? []
        return results.map(([err, value], i) => {
          if (err) throw err
          return { team, day: days[i]!, fields: Object.entries(value as Record<string, string>).map(([f, v]) => [f, Number(v)] as [string, number]) }
        })
      }),
    )
    return aggregateUsage(sources.flat(), q)
  }

  /**
   * Audit entries go out in batches: one script call for up to AUDIT_BATCH entries, at most
   * AUDIT_DELAY_MS after the first (an XADD per request was a third of the gateway's Redis work).
   * The promise of the call that opens a batch settles with the batch's write, so a failure is
   * reported once per batch; the others resolve at once.
   */
  audit(e: AuditEntry): Promise<void> {
    this.auditBatch.push(
      'time', e.time, 'request_id', e.request_id, 'team', e.team, 'key_id', e.key_id, 'model', e.model,
      'endpoint', e.endpoint, 'status', e.status, 'prompt_tokens', e.prompt_tokens,
      'completion_tokens', e.completion_tokens, 'total_tokens', e.total_tokens,
      'estimated', e.estimated ? 1 : 0, 'latency_ms', e.latency_ms,
    )
    let opened = NOTHING
    if (this.auditDone === null) {
      opened = new Promise<void>((resolve, reject) => (this.auditDone = { resolve, reject }))
      this.auditTimer = setTimeout(() => void this.writeAudit(), AUDIT_DELAY_MS)
      this.auditTimer.unref()
    }
    if (this.auditBatch.length >= AUDIT_BATCH * AUDIT_WIDTH) void this.writeAudit()
    return opened
  }

  /** Writes the audit entries waiting now (also at shutdown). */
  writeAudit(): Promise<void> {
    if (this.auditTimer !== null) clearTimeout(this.auditTimer)
    this.auditTimer = null
    const done = this.auditDone
    this.auditDone = null
    if (this.auditBatch.length === 0) {
      done?.resolve()
      return NOTHING
    }
    const batch = this.auditBatch
    this.auditBatch = []
    const write = this.auditScript(1, `${this.prefix}audit`, this.auditMaxLen, AUDIT_WIDTH, ...batch).then(() => undefined)
    write.then(() => done?.resolve(), (err: unknown) => done?.reject(err))
    return write
  }
}
