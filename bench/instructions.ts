/**
 * Instructions per request, counted by valgrind's callgrind: unlike time, the count does not
 * move with what else the shared machine is doing, so small changes can be compared. Each build
 * runs under callgrind against the bench origin; after a warm-up the counters are zeroed, N
 * sequential requests are sent, and the instructions of that stretch are divided by N.
 *
 *   cd bench && node --import tsx instructions.ts ../dist [OTHER_BUILD …]   (INSTR_N=2000, INSTR_WARM=3000)
 *   INSTR_REDIS=1 …     (gateways on Redis, limits on)
 *   INSTR_C=1           (concurrent clients; at 1 a build's count repeats within about 1 %, at 64
 *                        it does not: how many requests share an event-loop turn depends on timing)
 *   the word `bare` in place of a build directory measures the bare Fastify + undici hop;
 *   node flags follow an @: ../dist@--max-semi-space-size=64
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { freePort, startRedis } from '../test/helpers/redis.js'

const N = Number(process.env.INSTR_N ?? 2000)
const WARM = Number(process.env.INSTR_WARM ?? 3000)
const C = Number(process.env.INSTR_C ?? 1)
const builds = process.argv.slice(2).map((d) => {
  const [dir, flags] = d.split('@') as [string, string | undefined]
  return { name: d, dir: dir === 'bare' ? dir : resolve(dir), flags: flags?.replaceAll(',', ' ') ?? '' }
})
const ROOT = new URL('..', import.meta.url).pathname
const ADMIN = 'bench-admin-token-0000000000000000'
const children: ChildProcess[] = []
const run = (cmd: string, env: Record<string, string> = {}) => {
  const child = spawn('bash', ['-c', `exec ${cmd}`], { cwd: ROOT, env: { ...process.env, ...env }, stdio: 'ignore' })
  children.push(child)
  return child
}
async function up(url: string) {
  for (let i = 0; i < 1200; i++) {
    if (await fetch(url).then((r) => r.status < 500, () => false)) return
    await sleep(100)
  }
  throw new Error(`${url} did not come up`)
}
const body = JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 32 })
async function load(base: string, auth: string, total: number) {
  const pool = new Pool(base, { connections: C })
  let left = total
  await Promise.all(Array.from({ length: C }, async () => {
    while (left-- > 0) {
      const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json', authorization: auth }, body })
      if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${await res.body.text()}`)
      await res.body.dump()
    }
  }))
  await pool.close()
}
// vgdb finds the process by user and host names taken from the environment: the gateway's HOST too.
const controlEnv = { ...process.env, HOST: '127.0.0.1' }
const control = (...args: string[]) => spawnSync('callgrind_control', args, { encoding: 'utf8', env: controlEnv })

try {
  const originPort = await freePort()
  run(`node --import tsx bench/origin.ts ${originPort}`)
  const origin = `http://127.0.0.1:${originPort}`
  await up(`${origin}/v1/models`)
  const redis = process.env.INSTR_REDIS ? await startRedis() : null
  console.log(`instructions per request, ${N} requests at c=${C} after ${WARM} to warm up${redis ? ', Redis' : ''}`)
  console.log('| build | instructions/request |\n| --- | --- |')
  for (const build of builds) {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-cg-'))
    const port = await freePort()
    const bare = build.dir === 'bare'
    const script = bare ? `--import tsx bench/bare-proxy.ts ${port} ${origin}` : `${build.dir}/server.js`
    const child = run(`valgrind --tool=callgrind --callgrind-out-file=${dir}/cg.out --dump-instr=no node --single-threaded ${build.flags} ${script}`, {
      PORT: String(port), HOST: '127.0.0.1', ADMIN_TOKEN: ADMIN, NVIDIA_BASE_URL: `${origin}/v1`, NVIDIA_API_KEY: 'nvapi-bench',
      LOG_LEVEL: 'info', NVIDIA_RETRIES: '0', ...(redis ? { REDIS_URL: redis.url } : {}),
    })
    const base = `http://127.0.0.1:${port}`
    let key = 'none'
    if (bare) await up(`${base}/v1/chat/completions`)
    else {
      await up(`${base}/healthz`)
      const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }
      const team = `cg${children.length}`
      const limits = redis ? { limits: { requests_per_minute: 100_000_000, tokens_per_day: 1_000_000_000_000, concurrent_requests: 100_000 } } : {}
      await fetch(`${base}/admin/teams`, { method: 'POST', headers: admin, body: JSON.stringify({ id: team, ...limits }) })
      ;({ key } = (await (await fetch(`${base}/admin/teams/${team}/keys`, { method: 'POST', headers: admin, body: '{}' })).json()) as { key: string })
    }
    await load(base, `Bearer ${key}`, WARM)
    const zeroed = control('-z', String(child.pid))
    if (zeroed.status !== 0 || !zeroed.stdout.includes('OK')) throw new Error(`callgrind_control: ${zeroed.stderr}`)
    await load(base, `Bearer ${key}`, N)
    // valgrind takes a command when the process next runs: spawn it, then wake the process up.
    const dumped = new Promise((r) => spawn('callgrind_control', ['-d', String(child.pid)], { stdio: 'ignore', env: controlEnv }).once('exit', r))
    await sleep(200)
    let text = ''
    for (let i = 0; i < 600 && !/^totals: /m.test(text); i++) {
      await fetch(`${base}/healthz`).catch(() => {}) // (the bare hop answers 404: it wakes all the same)
      await sleep(100)
      const dump = readdirSync(dir).find((f) => f !== 'cg.out' && f.startsWith('cg.out'))
      if (dump) text = readFileSync(join(dir, dump), 'utf8')
    }
    await dumped
    child.kill('SIGKILL')
    const total = Number(/^summary: (\d+)/m.exec(text)?.[1])
    console.log(`| ${build.name} | ${(total / N / 1000).toFixed(1)} k |`)
  }
  await redis?.stop()
} finally {
  for (const c of children) c.kill('SIGKILL')
}
