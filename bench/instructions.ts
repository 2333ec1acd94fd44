/**
 * Instructions per request, counted by valgrind's callgrind: unlike time, the count does not
 * move with what else the shared machine is doing, so small changes can be compared. Each build
 * runs under callgrind against the bench origin; after a warm-up the counters are zeroed, N
 * sequential requests are sent, and the instructions of that stretch are divided by N.
 *
 *   cd bench && node --import tsx instructions.ts ../dist [OTHER_BUILD …]   (INSTR_N=2000, INSTR_WARM=3000)
 *   INSTR_REDIS=1 …     (gateways on Redis, limits on)
 *   INSTR_C=1           (concurrent clients; at 64 the count does not repeat: how many requests
 *                        share an event-loop turn depends on timing. At 1 it repeated within about
 *                        1 % on one machine, but not on another: two copies of one build
 *                        counted 812 k and 713 k, as timers that fire per second weigh less per
 *                        request when requests get faster. Measure a build twice before trusting
 *                        a difference of a few per cent.)
 *   the word `bare` in place of a build directory measures the bare Fastify + undici hop;
 *   node flags follow an @: ../dist@--max-semi-space-size=64
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort, startRedis } from '../test/helpers/redis.js'
import { BENCH_LIMITS, benchKey, drive, gatewayEnv, killAll, parseBuild, run, startOrigin, up } from './lib.js'

const N = Number(process.env.INSTR_N ?? 2000)
const WARM = Number(process.env.INSTR_WARM ?? 3000)
const C = Number(process.env.INSTR_C ?? 1)
const builds = process.argv.slice(2).map(parseBuild)
// Under valgrind a server starts in tens of seconds.
const START_MS = 120_000
const load = (base: string, auth: string, total: number) => drive(base, auth, total, C)
// vgdb finds the process by user and host names taken from the environment: the gateway's HOST too.
const controlEnv = { ...process.env, HOST: '127.0.0.1' }
const control = (...args: string[]) => spawnSync('callgrind_control', args, { encoding: 'utf8', env: controlEnv })

try {
  // Idle upstream connections kept a minute: under valgrind the gateway is slow enough to send a
  // request on one the fake upstream is closing at Node's 5 s (a run died on a 502).
  const { url: origin } = await startOrigin(60_000)
  const redis = process.env.INSTR_REDIS ? await startRedis() : null
  console.log(`instructions per request, ${N} requests at c=${C} after ${WARM} to warm up${redis ? ', Redis' : ''}`)
  console.log('| build | instructions/request |\n| --- | --- |')
  for (const build of builds) {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-cg-'))
    const port = await freePort()
    const bare = build.dir === 'bare'
    const script = bare ? `--import tsx bench/bare-proxy.ts ${port} ${origin}` : `${build.dir}/server.js`
    const child = run(
      `valgrind --tool=callgrind --callgrind-out-file=${dir}/cg.out --dump-instr=no node --single-threaded ${build.flags} ${script}`,
      gatewayEnv(port, origin, redis?.url),
    )
    const base = `http://127.0.0.1:${port}`
    let key = 'none'
    if (bare) await up(`${base}/v1/chat/completions`, START_MS)
    else {
      await up(`${base}/healthz`, START_MS)
      key = await benchKey(base, `cg${builds.indexOf(build)}`, redis ? BENCH_LIMITS : undefined)
    }
    await load(base, `Bearer ${key}`, WARM)
    const zeroed = control('-z', String(child.pid))
    if (zeroed.status !== 0 || !zeroed.stdout.includes('OK')) throw new Error(`callgrind_control: ${zeroed.stderr}`)
    await load(base, `Bearer ${key}`, N)
    // valgrind takes a command when the process next runs: spawn it, then wake the process up.
    const dumped = new Promise((r) =>
      spawn('callgrind_control', ['-d', String(child.pid)], { stdio: 'ignore', env: controlEnv }).once('exit', r),
    )
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
  killAll()
}
