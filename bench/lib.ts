/** What the bench scripts share: child processes, waiting for servers, the gateway's settings. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export const ROOT = new URL('..', import.meta.url).pathname
export const ADMIN = 'bench-admin-token-0000000000000000'
/** The Redis row's team limits: on, so every request is admitted and settled, yet never refused. */
export const BENCH_LIMITS = { requests_per_minute: 100_000_000, tokens_per_day: 1_000_000_000_000, concurrent_requests: 100_000 }
export const BODY = JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 32 })

const children: ChildProcess[] = []

/** A command in the repository root, with a higher open-files limit (for held streams); killed by killAll. */
export function run(cmd: string, env: Record<string, string> = {}): ChildProcess {
  const child = spawn('bash', ['-c', `ulimit -n 65536 2>/dev/null; exec ${cmd}`], { cwd: ROOT, env: { ...process.env, ...env }, stdio: 'ignore' })
  children.push(child)
  return child
}

export function killAll(): void {
  for (const c of children) c.kill('SIGKILL')
}

/** Waits until the URL answers below 500 (a slow start, as under valgrind, takes a longer timeout). */
export async function up(url: string, timeoutMs = 10_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    if (await fetch(url).then((r) => r.status < 500, () => false)) return
    await sleep(50)
  }
  throw new Error(`${url} did not come up`)
}

/** The gateway's environment against the bench origin (and Redis when given). */
export function gatewayEnv(port: number, origin: string, redisUrl?: string): Record<string, string> {
  return {
    PORT: String(port), HOST: '127.0.0.1', ADMIN_TOKEN: ADMIN, NVIDIA_BASE_URL: `${origin}/v1`, NVIDIA_API_KEY: 'nvapi-bench',
    LOG_LEVEL: 'info', NVIDIA_RETRIES: '0', ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
  }
}

/** Creates a team (with limits, if any) on a running gateway and returns a new key of it. */
export async function benchKey(base: string, team: string, limits?: object): Promise<string> {
  const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
  await fetch(`${base}/admin/teams`, { method: 'POST', headers: admin, body: JSON.stringify({ id: team, ...(limits ? { limits } : {}) }) })
  const res = await fetch(`${base}/admin/teams/${team}/keys`, { method: 'POST', headers: admin, body: '{}' })
  return ((await res.json()) as { key: string }).key
}

/** `DIR` or `DIR@--flag,--other`: a build directory and the node flags to run it with. */
export function parseBuild(arg: string): { name: string; dir: string; flags: string } {
  const [dir, flags] = arg.split('@') as [string, string | undefined]
  return { name: arg, dir: dir === 'bare' ? dir : resolve(dir), flags: flags?.replaceAll(',', ' ') ?? '' }
}

/** User + system CPU time of a process so far, in microseconds (clock ticks of 10 ms). */
export function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
