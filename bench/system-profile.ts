/**
 * Where the whole machine's CPU goes under load, by process, and what the server's main thread
 * spends per request: `perf record -a -g` (Linux perf; Debian package linux-perf) while 64 clients
 * drive one target at a time, the server run with `--perf-basic-prof` so its JavaScript frames have
 * names. For each target it prints:
 *   - each process's share of the cores' time, idle included (the load generator, the fake
 *     upstream, the server's main thread and its other threads, Redis, `swapper`: a core with
 *     nothing to run, and the samples no core took: a core asleep takes none);
 *   - the server's main thread in perf samples per 1,000 requests (one sample = 1/499 s of a core),
 *     by where the sample's innermost JavaScript frame is (the gateway's code by directory, a
 *     library, a Node module, GC, or native code with no JavaScript frame; lib.ts's codeGroup);
 *   - of those, the samples in socket writes (one row above), by the first library or directory of
 *     ours up the stack (a hint: V8's inlining can hide a frame).
 *
 *   cd bench && node --import tsx system-profile.ts            (all four targets; SP_SECONDS=10, SP_C=64)
 *   node --import tsx system-profile.ts bare redis            (some of them: bare, embedded, limits, redis)
 *
 * Uses the build in ../dist (npm run build). The targets run one after another, so a machine whose
 * speed drifts shows it between them: compare shares within one target, and repeat a run before
 * reading anything into a difference between targets.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { TARGETS, codeGroup, drive, killAll, startOrigin, startTarget, type TargetName } from './lib.js'

const SECONDS = Number(process.env.SP_SECONDS ?? 10)
const C = Number(process.env.SP_C ?? 64)
const HZ = 499

const chosen = (process.argv.length > 2 ? process.argv.slice(2) : [...TARGETS]) as TargetName[]
if (chosen.some((t) => !TARGETS.includes(t))) {
  console.error(`usage: node --import tsx system-profile.ts [${TARGETS.join('|')} …]`)
  process.exit(2)
}
if (spawnSync('perf', ['--version']).status !== 0) {
  console.error('system-profile needs Linux perf (Debian: apt-get install linux-perf)')
  process.exit(2)
}

interface Sample {
  pid: number
  tid: number
  comm: string
  frames: string[]
}

/** perf script's text: a header line per sample (comm pid/tid), then one indented line per frame, innermost first. */
function parseSamples(text: string): Sample[] {
  const samples: Sample[] = []
  let current: Sample | null = null
  for (const line of text.split('\n')) {
    if (line.length === 0) continue
    if (line[0] !== '\t' && line[0] !== ' ') {
      const m = /^(.*?)\s+(\d+)\/(\d+)/.exec(line)
      if (m === null) continue
      current = { comm: m[1]!.trim(), pid: Number(m[2]), tid: Number(m[3]), frames: [] }
      samples.push(current)
    } else if (current !== null) {
      const frame = line.trim()
      const space = frame.indexOf(' ')
      current.frames.push(space < 0 ? frame : frame.slice(space + 1))
    }
  }
  return samples
}

/** Where a JavaScript frame's code belongs (lib.ts's codeGroup), or null for a native frame. */
function component(frame: string): string | null {
  if (!frame.startsWith('JS:')) return null
  const space = frame.lastIndexOf(' ')
  return space < 0 ? 'js: other' : codeGroup(frame.slice(space + 1))
}

const GC = /Scavenger|MarkCompact|Heap::CollectGarbage|ConcurrentMarking/
/** A JavaScript frame of a socket write (not a read: onStreamRead is in stream_base_commons too). */
const SOCKET_WRITE =
  /node:internal\/streams\/writable|(writeGeneric|writevGeneric|handleWriteReq|afterWriteDispatched) node:internal\/stream_base_commons/

function where(frames: string[]): string {
  if (frames.some((f) => GC.test(f))) return 'GC'
  // One row for socket writes, whichever of Node's write frames V8 happened to inline.
  if (SOCKET_WRITE.test(frames.find((f) => f.startsWith('JS:')) ?? '')) return 'node:socket writes'
  for (const f of frames) {
    const c = component(f)
    if (c !== null) return c
  }
  return frames[0]?.startsWith('[') || frames.some((f) => f.includes('entry_SYSCALL')) ? 'native: kernel' : 'native: other'
}

/** For a sample in a socket write: the first library (or our code) up the stack, which asked for it. */
function writer(frames: string[]): string {
  for (const f of frames) {
    const c = component(f)
    if (c !== null && !c.startsWith('node:')) return c
  }
  return 'node internals'
}

const rows = (counts: Map<string, number>, scale: number, top: number) =>
  [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `| ${k} | ${(v * scale).toFixed(2)} |`)

function bump(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1)
}

async function profile(name: TargetName, origin: string, originPid: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-perf-'))
  const { server, base, auth, redis } = await startTarget(name, origin, '--perf-basic-prof')
  try {
    await drive(base, auth, 3000, C) // warm-up

    // Load for longer than the recording, which starts once the load is steady.
    let done = false
    const load = (async () => {
      let requests = 0
      let seconds = 0
      while (!done) {
        const r = await drive(base, auth, 2000, C)
        requests += 2000
        seconds += r.seconds
      }
      return requests / seconds
    })()
    await sleep(1000)
    const data = join(dir, 'perf.data')
    const recorder = spawn('perf', ['record', '-a', '-g', '-F', String(HZ), '-o', data, '--', 'sleep', String(SECONDS)], {
      stdio: 'ignore',
    })
    await new Promise((resolve) => recorder.once('exit', resolve))
    done = true
    const rps = await load

    const script = spawnSync('perf', ['script', '-i', data, '-F', 'comm,pid,tid,ip,sym'], { encoding: 'utf8', maxBuffer: 1 << 30 })
    const samples = parseSamples(script.stdout)
    rmSync(`/tmp/perf-${server.pid}.map`, { force: true })
    const roles = new Map<number, string>([
      [0, 'idle (swapper)'],
      [process.pid, 'load generator'],
      [originPid, 'fake upstream'],
      [server.pid!, 'server'],
    ])
    if (redis) roles.set(redis.process.pid!, 'redis-server')
    const byProcess = new Map<string, number>()
    const byPlace = new Map<string, number>()
    const writes = new Map<string, number>()
    let main = 0
    for (const s of samples) {
      const role = roles.get(s.pid) ?? `other: ${s.comm}`
      bump(byProcess, role === 'server' ? (s.tid === s.pid ? 'server, main thread' : 'server, its other threads (GC, I/O)') : role)
      if (s.tid !== server.pid) continue
      main++
      const place = where(s.frames)
      bump(byPlace, place)
      if (place === 'node:socket writes') bump(writes, writer(s.frames))
    }
    const requests = rps * SECONDS
    const perKilo = 1000 / requests
    // A core asleep in the hypervisor takes no samples at all, so shares are of the samples the
    // cores could have taken, and what none took is idle too.
    const possible = HZ * SECONDS * availableParallelism()
    byProcess.set('idle, not sampled (a core asleep)', Math.max(0, possible - samples.length))
    console.log(
      `\n## ${name}: ${Math.round(rps)} requests/s at c=${C}; ${samples.length} samples over ${SECONDS} s of ${possible} possible`,
    )
    console.log('\n| process | share of the cores |\n| --- | --- |')
    for (const [k, v] of [...byProcess.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10))
      console.log(`| ${k} | ${((100 * v) / possible).toFixed(1)} % |`)
    console.log(
      `\nServer main thread: ${(main * perKilo).toFixed(1)} samples per 1,000 requests (${((main / HZ / requests) * 1e6).toFixed(0)} µs of CPU per request).`,
    )
    console.log('\n| innermost JavaScript (or GC, or native) | samples per 1,000 requests |\n| --- | --- |')
    for (const r of rows(byPlace, perKilo, 25)) console.log(r)
    console.log('\n| socket writes, asked for by | samples per 1,000 requests |\n| --- | --- |')
    for (const r of rows(writes, perKilo, 6)) console.log(r)
  } finally {
    server.kill('SIGKILL')
    await redis?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

try {
  const { url: origin, process: upstream } = await startOrigin()
  for (const name of chosen) await profile(name, origin, upstream.pid!)
} finally {
  killAll()
}
