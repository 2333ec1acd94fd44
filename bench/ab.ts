/**
 * Paired A/B of gateway builds: each build against the same fast upstream, beside the bare hop,
 * in many short rounds at 64 concurrent clients, the order turned by one place each round (lib.ts's
 * rotated). Reports, per build, the median over rounds of its CPU per request divided by the first
 * build's in the same round (and by the bare hop's): on a shared machine whose speed drifts from
 * minute to minute, the ratio within a round is far steadier than any absolute figure. Even so,
 * two copies of one build differ by up to 7 % (once 17 %) in one run: list the old build twice to
 * see a run's noise, and repeat the run.
 *
 *   npm run build && cp -r dist /tmp/a     (then change something, build again)
 *   cd bench && node --import tsx ab.ts /tmp/a ../dist          (BENCH_ROUNDS=25, BENCH_N=1500)
 *   BENCH_REDIS=1 ...                      (gateways on Redis, limits on; Redis's own CPU per request too)
 *   BENCH_LIMITS=1 ...                     (limits on with the embedded store too)
 *   BENCH_C=1 ...                     (concurrent clients, 64 by default; p50 and p99 are per request)
 *   BENCH_STREAM=1 ...                (streams of 64 chunks; p50 and p99 are then of the first byte)
 *   BENCH_BARE_FLAGS=--single-threaded-gc ...   (node flags for the bare hop too)
 *   node --import tsx ab.ts ../dist ../dist@--max-semi-space-size=32      (node flags after @)
 * A build directory must resolve the repository's node_modules (put copies under the repository).
 */
import { freePort, startRedis, type RedisServer } from '../test/helpers/redis.js'
import {
  BENCH_LIMITS,
  BODY,
  benchKey,
  cpuMicros,
  drive,
  gatewayEnv,
  killAll,
  median,
  parseBuild,
  quantile,
  rotated,
  run,
  startOrigin,
  up,
} from './lib.js'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 25)
const N = Number(process.env.BENCH_N ?? 1500)
const C = Number(process.env.BENCH_C ?? 64)
const STREAM = Boolean(process.env.BENCH_STREAM)
const LIMITS = Boolean(process.env.BENCH_LIMITS)
const builds = process.argv.slice(2).map(parseBuild)

interface Target {
  name: string
  base: string
  auth: string
  pid: number
}
const body = STREAM ? JSON.stringify({ ...JSON.parse(BODY), stream: true }) : BODY

let redisPid: number | undefined
let redis: RedisServer | null = null

async function load(t: Target, total: number) {
  const c0 = cpuMicros(t.pid)
  const r0 = redisPid === undefined ? 0 : cpuMicros(redisPid)
  const { seconds, latencies, firstBytes } = await drive(t.base, t.auth, total, C, { body, firstByte: STREAM })
  const times = STREAM ? firstBytes : latencies
  return {
    rps: total / seconds,
    cpu: (cpuMicros(t.pid) - c0) / total,
    redisCpu: redisPid === undefined ? 0 : (cpuMicros(redisPid) - r0) / total,
    p50: quantile(times, 0.5),
    p99: quantile(times, 0.99),
  }
}

if (builds.length === 0 || new Set(builds.map((b) => b.name)).size < builds.length) {
  console.error('usage: node --import tsx ab.ts BUILD_DIR [BUILD_DIR …] (each once: copy a build to compare it with itself)')
  process.exit(2)
}
try {
  const { url: origin } = await startOrigin()
  redis = process.env.BENCH_REDIS ? await startRedis() : null
  redisPid = redis?.process.pid
  const barePort = await freePort()
  const bare = run(`node ${process.env.BENCH_BARE_FLAGS ?? ''} --import tsx bench/bare-proxy.ts ${barePort} ${origin}`)
  await up(`http://127.0.0.1:${barePort}/v1/chat/completions`)
  const targets: Target[] = [{ name: 'bare hop', base: `http://127.0.0.1:${barePort}`, auth: 'Bearer x', pid: bare.pid! }]
  for (const [i, build] of builds.entries()) {
    const port = await freePort()
    const child = run(`node ${build.flags} ${build.dir}/server.js`, gatewayEnv(port, origin, redis?.url))
    const base = `http://127.0.0.1:${port}`
    await up(`${base}/healthz`)
    const key = await benchKey(base, `ab${i}`, redis || LIMITS ? BENCH_LIMITS : undefined)
    targets.push({ name: build.name, base, auth: `Bearer ${key}`, pid: child.pid! })
  }
  for (const t of targets) await load(t, 3000)
  const results = new Map(targets.map((t) => [t.name, [] as { rps: number; cpu: number; redisCpu: number; p50: number; p99: number }[]]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of rotated(targets, round)) results.get(t.name)!.push(await load(t, N))
  }
  const bareRuns = results.get('bare hop')!
  const firstRuns = results.get(builds[0]!.name)!
  console.log(
    `\npaired A/B, ${ROUNDS} rounds of ${N} ${STREAM ? 'streams (p50, p99: first byte)' : 'requests'} at c=${C}${redis ? ', Redis' : ''}, medians of per-round ratios`,
  )
  console.log(
    `| target | CPU µs/request |${redis ? ' Redis CPU µs/request |' : ''} CPU vs first build | CPU vs bare hop | rps vs bare hop | p50 ms | p50 minus bare hop’s (ms) | p99 vs bare hop |`,
  )
  console.log(`| --- | --- |${redis ? ' --- |' : ''} --- | --- | --- | --- | --- | --- |`)
  for (const t of targets) {
    const runs = results.get(t.name)!
    const ratio = (of: (i: number) => number) => median(runs.map((_, i) => of(i))).toFixed(3)
    const p50 = median(runs.map((r) => r.p50)).toFixed(3)
    const added = median(runs.map((r, i) => r.p50 - bareRuns[i]!.p50)).toFixed(3)
    console.log(
      `| ${t.name} | ${median(runs.map((r) => r.cpu)).toFixed(0)} |${redis ? ` ${median(runs.map((r) => r.redisCpu)).toFixed(0)} |` : ''} ${t.name === 'bare hop' ? '–' : ratio((i) => runs[i]!.cpu / firstRuns[i]!.cpu)} | ${ratio((i) => runs[i]!.cpu / bareRuns[i]!.cpu)} | ${ratio((i) => runs[i]!.rps / bareRuns[i]!.rps)} | ${p50} | ${t.name === 'bare hop' ? '–' : added} | ${ratio((i) => runs[i]!.p99 / bareRuns[i]!.p99)} |`,
    )
  }
} finally {
  await redis?.stop()
  killAll()
}
