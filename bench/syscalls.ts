/**
 * System calls and context switches per request of each server's main thread, by target: `perf
 * stat` counts them (tracepoints and a software event, so it works where a VM has no hardware
 * counters) while C clients drive one target at a time. On a machine where a loopback write wakes
 * the process that reads it, each write and each wake-up is dear: this shows what the Redis round
 * trips add to the bare hop's two writes and two reads per request.
 *
 *   cd bench && node --import tsx syscalls.ts            (SC_C=16, SC_N=20000; Linux perf)
 *   SC_C=1 node --import tsx syscalls.ts                 (one client: nothing shared between requests)
 */
import { spawn, spawnSync } from 'node:child_process'
import { TARGETS, drive, killAll, startOrigin, startTarget } from './lib.js'

const C = Number(process.env.SC_C ?? 16)
const N = Number(process.env.SC_N ?? 20_000)
const EVENTS = ['context-switches', 'syscalls:sys_enter_write', 'syscalls:sys_enter_writev', 'syscalls:sys_enter_read']

if (spawnSync('perf', ['--version']).status !== 0) {
  console.error('syscalls needs Linux perf (Debian: apt-get install linux-perf)')
  process.exit(2)
}

try {
  const { url: origin } = await startOrigin()
  console.log(`per request of the server's main thread, ${N} requests at c=${C}`)
  console.log(`| target | ${EVENTS.map((e) => e.replace('syscalls:sys_enter_', '')).join(' | ')} |`)
  console.log(`| --- |${EVENTS.map(() => ' --- |').join('')}`)
  for (const target of TARGETS) {
    const { server, base, auth, redis } = await startTarget(target, origin)
    await drive(base, auth, 3000, C)
    // -t: the main thread only (its id is the process's); -x: values as CSV on stderr.
    const perf = spawn('perf', ['stat', '-x', ',', '-e', EVENTS.join(','), '-t', String(server.pid)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let out = ''
    perf.stderr.on('data', (d: Buffer) => (out += d))
    await new Promise((resolve) => setTimeout(resolve, 300))
    await drive(base, auth, N, C)
    perf.kill('SIGINT')
    await new Promise((resolve) => perf.once('exit', resolve))
    const counts = new Map(
      out
        .trim()
        .split('\n')
        .map((l) => l.split(','))
        .filter((f) => f.length > 2)
        .map((f) => [f[2]!, Number(f[0])]),
    )
    console.log(`| ${target} | ${EVENTS.map((e) => ((counts.get(e) ?? NaN) / N).toFixed(2)).join(' | ')} |`)
    server.kill('SIGINT')
    await new Promise((resolve) => server.once('exit', resolve))
    await redis?.stop()
  }
} finally {
  killAll()
}
