/** What the bench scripts share: child processes, waiting for servers, the fake upstream, load, the gateway's settings. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { NO_AUDIT, type AuditLog } from '../src/audit/types.js'
import type { QuotaEngine, Scope } from '../src/quota/types.js'
import { freePort, startRedis, type RedisServer } from '../test/helpers/redis.js'

export const ROOT = new URL('..', import.meta.url).pathname
export const ADMIN = 'bench-admin-token-0000000000000000'
/** The Redis row's team limits: on, so every request is admitted and settled, yet never refused. */
export const BENCH_LIMITS = { requests_per_minute: 100_000_000, tokens_per_day: 1_000_000_000_000, concurrent_requests: 100_000 }
export const BODY = JSON.stringify({
  model: 'meta/llama-3.1-8b-instruct',
  messages: [{ role: 'user', content: 'Say hello.' }],
  max_tokens: 32,
})

const children: ChildProcess[] = []

/** A command in the repository root, with a higher open-files limit (for held streams); killed by killAll. */
export function run(cmd: string, env: Record<string, string> = {}): ChildProcess {
  const child = spawn('bash', ['-c', `ulimit -n 65536 2>/dev/null; exec ${cmd}`], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: 'ignore',
  })
  children.push(child)
  return child
}

export function killAll(): void {
  for (const c of children) c.kill('SIGKILL')
}

/** Waits until the URL answers below 500 (a slow start, as under valgrind, takes a longer timeout). */
export async function up(url: string, timeoutMs = 10_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
    if (
      await fetch(url).then(
        (r) => r.status < 500,
        () => false,
      )
    )
      return
    await sleep(50)
  }
  throw new Error(`${url} did not come up`)
}

/** The gateway's environment against the bench origin (and Redis when given). */
export function gatewayEnv(port: number, origin: string, redisUrl?: string): Record<string, string> {
  return {
    PORT: String(port),
    HOST: '127.0.0.1',
    ADMIN_TOKEN: ADMIN,
    NVIDIA_BASE_URL: `${origin}/v1`,
    NVIDIA_API_KEY: 'nvapi-bench',
    LOG_LEVEL: 'info',
    NVIDIA_RETRIES: '0',
    ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
  }
}

/** Creates a team (with limits, if any) on a running gateway and returns a new key of it. */
export async function benchKey(base: string, team: string, limits?: object): Promise<string> {
  const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
  await fetch(`${base}/admin/teams`, { method: 'POST', headers: admin, body: JSON.stringify({ id: team, ...(limits ? { limits } : {}) }) })
  const res = await fetch(`${base}/admin/teams/${team}/keys`, { method: 'POST', headers: admin, body: '{}' })
  return ((await res.json()) as { key: string }).key
}

/** Starts the gateway (dist, node `flags` first) on a free port, on Redis if given, and waits until it answers. */
export async function startGateway(origin: string, redisUrl?: string, flags = ''): Promise<{ server: ChildProcess; base: string }> {
  const port = await freePort()
  const server = run(`node ${flags} dist/server.js`, gatewayEnv(port, origin, redisUrl))
  const base = `http://127.0.0.1:${port}`
  try {
    await up(`${base}/healthz`)
  } catch (err) {
    server.kill('SIGKILL')
    throw err
  }
  return { server, base }
}

/** The servers a profile can drive: the bare hop, and the gateway (dist) with the embedded store, with the Redis row's limits on, or on Redis. */
export const TARGETS = ['bare', 'embedded', 'limits', 'redis'] as const
export type TargetName = (typeof TARGETS)[number]

/**
 * Starts one target on a free port, node `flags` first, and waits until it answers: the gateway
 * with a team and key of its own (the Redis row's limits for `limits` and `redis`, on a
 * redis-server of its own for `redis`). Returns where to send requests and with what key.
 */
export async function startTarget(
  name: TargetName,
  origin: string,
  flags = '',
): Promise<{ server: ChildProcess; base: string; auth: string; redis: RedisServer | null }> {
  if (name === 'bare') {
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    const server = run(`node ${flags} --import tsx bench/bare-proxy.ts ${port} ${origin}`)
    await up(`${base}/v1/chat/completions`)
    return { server, base, auth: 'Bearer x', redis: null }
  }
  const redis = name === 'redis' ? await startRedis() : null
  try {
    const { server, base } = await startGateway(origin, redis?.url, flags)
    return { server, base, auth: `Bearer ${await benchKey(base, 'bench', name === 'embedded' ? undefined : BENCH_LIMITS)}`, redis }
  } catch (err) {
    await redis?.stop()
    throw err
  }
}

/** `DIR` or `DIR@--flag,--other`: a build directory and the node flags to run it with. */
export function parseBuild(arg: string): { name: string; dir: string; flags: string } {
  const [dir, flags] = arg.split('@') as [string, string | undefined]
  return { name: arg, dir: dir === 'bare' ? dir : resolve(dir), flags: flags?.replaceAll(',', ' ') ?? '' }
}

/**
 * CPU time of a process so far, in microseconds: the sum over its threads of the scheduler's own
 * count (/proc/PID/task/TID/schedstat, in nanoseconds). /proc/PID/stat counts in clock ticks of
 * 10 ms: over a round of 1,500 requests at about 150 µs each that is 5 % steps, as coarse as the
 * differences being measured.
 */
export function cpuMicros(pid: number): number {
  let micros = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      micros += threadCpuMicros(pid, tid)
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return micros
}

/** CPU time of one thread of a process so far, in microseconds (its scheduler count; the main thread's id is the pid). */
export function threadCpuMicros(pid: number, tid: number | string): number {
  return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1000
}

/**
 * Where a script belongs, from its location (a URL or path, a `:line:column` after it allowed):
 * node_modules/<pkg> (scoped too), node:<first part>, the gateway's own files as
 * tollgate/<directory>, or the location itself.
 */
export function codeGroup(location: string): string {
  const url = location.replace(/(:\d+)+$/, '')
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (m) return m[1]!
  if (url.startsWith('node:')) return 'node:' + (url.split('/')[1] ?? url.slice(5))
  const own = /\/dist\/(.+)$/.exec(url)
  return own ? `tollgate/${own[1]!.split('/')[0]!.replace(/\.js$/, '')}` : url
}

/**
 * The order of a round: `items` turned by `round` places. Over rounds each target takes each place
 * equally often, and none ever runs twice in a row (three or more of them). Reversing the order
 * every other round, as the bench did before, ran the last target twice in a row at every other
 * round's turn: a process measured again right after its own run was measured warm (an identical
 * copy listed last came out 0.969× of the first).
 */
export function rotated<T>(items: readonly T[], round: number): T[] {
  const k = round % items.length
  return [...items.slice(k), ...items.slice(0, k)]
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/**
 * A distribution-free interval for the median of `xs` (the sign test's): the k-th smallest and the
 * k-th largest of n values hold the median between them with probability 1 − 2·P(Binomial(n, ½) < k).
 * k is the largest for which that is at least `confidence`; null when n is too small for any.
 */
export function medianInterval(xs: number[], confidence = 0.95): { lo: number; hi: number; coverage: number } | null {
  const n = xs.length
  const sorted = [...xs].sort((a, b) => a - b)
  let choose = 1 // C(n, k - 1)
  let below = 0 // P(Binomial(n, ½) < k)
  let best: { lo: number; hi: number; coverage: number } | null = null
  for (let k = 1; 2 * k <= n + 1; k++) {
    below += choose / 2 ** n
    choose = (choose * (n - k + 1)) / k
    const coverage = 1 - 2 * below
    if (coverage < confidence) break
    best = { lo: sorted[k - 1]!, hi: sorted[n - k]!, coverage }
  }
  return best
}

/**
 * Whether a goal is met, from a median over rounds and its interval: met when the whole interval is
 * on the goal's side, not met when the whole of it is on the other, undecided when it spans the goal.
 */
export function verdict(
  xs: number[],
  goal: number,
  side: 'at most' | 'at least',
): { median: number; interval: ReturnType<typeof medianInterval>; says: string } {
  const m = median(xs)
  const interval = medianInterval(xs)
  const ok = (x: number) => (side === 'at most' ? x <= goal : x >= goal)
  let says: string
  if (interval === null) says = `${ok(m) ? 'met' : 'not met'} by the median (too few rounds for an interval)`
  else if (ok(interval.lo) && ok(interval.hi)) says = 'met'
  else if (!ok(interval.lo) && !ok(interval.hi)) says = 'not met'
  else says = 'undecided (the interval spans the goal)'
  return { median: m, interval, says }
}

/** The fast fake upstream (origin.ts) on a free port, answering; idle connections kept `keepAliveMs` (Node's 5 s by default). */
export async function startOrigin(keepAliveMs?: number): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort()
  const child = run(`node --import tsx bench/origin.ts ${port}${keepAliveMs === undefined ? '' : ` ${keepAliveMs}`}`)
  const url = `http://127.0.0.1:${port}`
  await up(`${url}/v1/models`)
  return { url, process: child }
}

/**
 * Sends `total` chat requests to `base` from `concurrency` clients at once, and throws on any answer
 * but 200. Returns the wall time, each request's time to its last byte (ms) and, with `firstByte`,
 * to its first (the body is then read chunk by chunk instead of dumped).
 */
export async function drive(
  base: string,
  auth: string,
  total: number,
  concurrency: number,
  options: { body?: string; firstByte?: boolean; pool?: ConstructorParameters<typeof Pool>[1] } = {},
): Promise<{ seconds: number; latencies: number[]; firstBytes: number[] }> {
  const pool = new Pool(base, { connections: concurrency, ...options.pool })
  const latencies: number[] = []
  const firstBytes: number[] = []
  let left = total
  const started = process.hrtime.bigint()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) {
        const t0 = process.hrtime.bigint()
        const res = await pool.request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: auth },
          body: options.body ?? BODY,
        })
        if (res.statusCode !== 200) throw new Error(`${base}: ${res.statusCode} ${await res.body.text()}`)
        if (options.firstByte) {
          let first = true
          for await (const _chunk of res.body) {
            if (first) firstBytes.push(Number(process.hrtime.bigint() - t0) / 1e6)
            first = false
          }
        } else {
          await res.body.dump()
        }
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6)
      }
    }),
  )
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  await pool.close()
  return { seconds, latencies, firstBytes }
}

/** The p-quantile of xs (0 ≤ p < 1), by rank. */
export const quantile = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!

/** How far quotaWork takes each request: admitted only, then settled too, then audited too. */
export type QuotaSteps = 'admit' | 'settle' | 'all'

/**
 * The gateway's quota work for `total` requests, `concurrency` at a time: each admitted (one team,
 * BENCH_LIMITS), settled and audited (with an audit log) as the proxy does it (or only the first
 * `steps`); then what waits of the audit is written.
 */
export async function quotaWork(
  q: QuotaEngine,
  total: number,
  concurrency: number,
  steps: QuotaSteps = 'all',
  audit: AuditLog = NO_AUDIT,
): Promise<void> {
  const scopes: Scope[] = [{ id: 'team', label: 'team', limits: BENCH_LIMITS }]
  const usage = { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 }
  let left = total
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) {
        const now = Date.now()
        const requestId = `r${left}-${now}`
        const admitted = await q.admit({ team: 'bench', requestId, scopes, tokens: 100, now })
        if (!admitted.ok) throw new Error(`refused: ${admitted.refusal.kind}`)
        if (steps === 'admit') continue
        await q.settle({ ticket: admitted.ticket, keyId: 'key_1', model: 'm', usage, estimated: false, now })
        if (steps === 'all')
          void audit.write({
            time: new Date(now).toISOString(),
            request_id: requestId,
            team: 'bench',
            key_id: 'key_1',
            end_user: '',
            model: 'm',
            endpoint: 'chat',
            status: 200,
            ...usage,
            estimated: false,
            cost_usd: 0,
            latency_ms: 1,
          })
      }
    }),
  )
  await audit.flush()
}
