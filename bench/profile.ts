/**
 * Where the gateway's CPU goes: runs one gateway under `node --cpu-prof` against the bench origin,
 * sends N requests at 64 concurrent clients (BENCH_C), and prints the profile's self time by package and by
 * function (the heaviest first). The .cpuprofile is kept for Chrome DevTools.
 *
 *   cd bench && npm run profile                      (embedded store; BENCH_N=20000)
 *   BENCH_REDIS=1 npm run profile                  (Redis: auth, limits, usage)
 *   BENCH_LIMITS=1 npm run profile                 (embedded store with the Redis row's limits on)
 *   BENCH_STREAM=1 npm run profile                 (streams of 64 chunks instead of JSON)
 *   BENCH_BARE=1 npm run profile                   (the bare Fastify + undici hop, for comparison)
 *   BENCH_C=1 npm run profile                      (one client at a time: what grows with concurrency)
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BODY, codeGroup, drive, killAll, startOrigin, startTarget } from './lib.js'

const N = Number(process.env.BENCH_N ?? 20_000)
const TOP = Number(process.env.BENCH_TOP ?? 40)
const C = Number(process.env.BENCH_C ?? 64)
interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: Node[]
  samples: number[]
  timeDeltas: number[]
}

/** A profile node's group (lib.ts's codeGroup), or V8 itself. */
function group(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)'
  return codeGroup(url)
}

try {
  const profDir = mkdtempSync(join(tmpdir(), 'tollgate-prof-'))
  const { url: origin } = await startOrigin()
  const bare = Boolean(process.env.BENCH_BARE)
  const target = bare ? 'bare' : process.env.BENCH_REDIS ? 'redis' : process.env.BENCH_LIMITS ? 'limits' : 'embedded'
  const { server: gateway, base, auth, redis } = await startTarget(target, origin, `--cpu-prof --cpu-prof-dir=${profDir}`)
  const body = process.env.BENCH_STREAM ? JSON.stringify({ ...JSON.parse(BODY), stream: true }) : BODY
  await drive(base, auth, N, C, { body })
  const exited = new Promise((r) => gateway.once('exit', r))
  gateway.kill('SIGINT')
  await exited
  if (redis) {
    // What Redis itself did per request: commands and its own CPU time (INFO commandstats).
    const { Redis } = await import('ioredis')
    const client = new Redis(redis.url)
    const stats = (await client.info('commandstats')).split('\r\n').filter((l) => l.startsWith('cmdstat_'))
    console.log('\n| Redis command | calls/request | Redis µs/request |\n| --- | --- | --- |')
    for (const line of stats) {
      const [name, rest] = line.slice('cmdstat_'.length).split(':') as [string, string]
      const f = Object.fromEntries(rest.split(',').map((kv) => kv.split('=')))
      if (Number(f.calls) >= N / 100) console.log(`| ${name} | ${(Number(f.calls) / N).toFixed(3)} | ${(Number(f.usec) / N).toFixed(1)} |`)
    }
    client.disconnect()
    await redis.stop()
  }

  const file = join(
    profDir,
    readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'))!,
  )
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<number, number>()
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)))
  const total = [...self.values()].reduce((a, b) => a + b, 0)
  const idle = [...self].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0)
  const busy = total - idle
  const groups = new Map<string, number>()
  const fns = new Map<string, number>()
  for (const [id, t] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame
    if (functionName === '(idle)') continue
    const g = group(url, functionName)
    groups.set(g, (groups.get(g) ?? 0) + t)
    const f = `${functionName || '(anonymous)'} ${g}:${lineNumber + 1}`
    fns.set(f, (fns.get(f) ?? 0) + t)
  }
  const table = (title: string, m: Map<string, number>) => {
    console.log(`\n| ${title} | µs/request | share of busy |\n| --- | --- | --- |`)
    for (const [k, t] of [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`| ${k} | ${(t / N).toFixed(1)} | ${((100 * t) / busy).toFixed(1)} % |`)
    }
  }
  console.log(
    `${N} requests at c=${C}${bare ? ', bare hop' : redis ? ', Redis' : ', embedded store'}${process.env.BENCH_STREAM ? ', streams' : ''}: busy ${(busy / N).toFixed(0)} µs/request (profiler on), profile ${file}`,
  )
  table('package', groups)
  table('function', fns)
} finally {
  killAll()
}
