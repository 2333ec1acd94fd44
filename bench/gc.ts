/**
 * Young-generation GC under load, the gateway (embedded store) beside the bare hop: each runs with
 * `--trace-gc-nvp` while 24,000 requests go through at 16 concurrent clients (after 5,000 to warm
 * up), and the scavenges of that stretch are summed up: how many, the median and total pause, and
 * the median bytes that survived and were promoted per scavenge. A scavenge stops the event loop,
 * so its pause lands on the requests in flight: this is where a p99 gap can come from.
 *
 *   cd bench && node --import tsx gc.ts          (BENCH_N=24000, BENCH_C=16)
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../test/helpers/redis.js'
import { ROOT, benchKey, drive, gatewayEnv, killAll, median, quantile, startOrigin, up } from './lib.js'

const N = Number(process.env.BENCH_N ?? 24_000)
const C = Number(process.env.BENCH_C ?? 16)

async function load(base: string, auth: string, total: number): Promise<{ p50: number; p99: number }> {
  const { latencies } = await drive(base, auth, total, C)
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) }
}

try {
  const { url: origin } = await startOrigin()
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-gc-'))
  console.log(`scavenges over ${N} requests at c=${C} (medians per scavenge)`)
  console.log('| target | p50 ms | p99 ms | scavenges | median pause ms | total pause ms | survived KB | promoted KB |')
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for (const target of ['bare hop', 'tollgate, embedded store']) {
    const bare = target === 'bare hop'
    const port = await freePort()
    const trace = join(dir, bare ? 'bare.log' : 'gateway.log')
    const args = bare
      ? ['--trace-gc-nvp', '--import', 'tsx', 'bench/bare-proxy.ts', String(port), origin]
      : ['--trace-gc-nvp', 'dist/server.js']
    // The trace goes to stdout; the request log is kept off it (warnings only).
    const child = spawn('node', args, {
      cwd: ROOT,
      env: { ...process.env, ...gatewayEnv(port, origin), LOG_LEVEL: 'warn' },
      stdio: ['ignore', openSync(trace, 'w'), 'ignore'],
    })
    const base = `http://127.0.0.1:${port}`
    let auth = 'Bearer x'
    if (bare) await up(`${base}/v1/chat/completions`)
    else {
      await up(`${base}/healthz`)
      auth = `Bearer ${await benchKey(base, 'gc')}`
    }
    await load(base, auth, 5_000)
    const from = readFileSync(trace, 'utf8').length
    const latency = await load(base, auth, N)
    const lines = readFileSync(trace, 'utf8')
      .slice(from)
      .split('\n')
      .filter((l) => l.includes('gc=s'))
    const field = (name: string) => lines.map((l) => Number(new RegExp(`\\b${name}=([\\d.]+)`).exec(l)?.[1] ?? Number.NaN))
    const pauses = field('pause')
    console.log(
      `| ${target} | ${latency.p50.toFixed(2)} | ${latency.p99.toFixed(2)} | ${lines.length} | ${median(pauses).toFixed(2)} | ${pauses.reduce((a, b) => a + b, 0).toFixed(1)} | ${(median(field('new_space_survived')) / 1024).toFixed(0)} | ${(median(field('promoted')) / 1024).toFixed(0)} |`,
    )
    child.kill('SIGKILL')
  }
} finally {
  killAll()
}
