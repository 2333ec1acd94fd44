/**
 * What one request log line costs the event loop, by destination: the gateway's BlockWriter (lines
 * joined into blocks of 16 KB, then one write through pino's sonic-boom), pino's sonic-boom handed
 * every line with a 4 KB minimum (pino's own way), the same written
 * synchronously, and no destination at all (what pino's serializing alone costs). Lines come 100 µs
 * apart, the main thread computing in between, as under load (set LW_GAP_US), to /dev/null (or
 * LW_DEST). The main thread's CPU is read from its scheduler count, the computing subtracted, in
 * alternating rounds; prints the median per line.
 *
 *   npx tsx bench/log-write.ts          (from the repository root; LW_N=40000, LW_ROUNDS=5)
 */
import { pino, type DestinationStream } from 'pino'
import { BlockWriter } from '../src/logger.js'
import { median, threadCpuMicros } from './lib.js'

const N = Number(process.env.LW_N ?? 40_000)
const ROUNDS = Number(process.env.LW_ROUNDS ?? 5)
const GAP_US = Number(process.env.LW_GAP_US ?? 100)
const DEST = process.env.LW_DEST ?? '/dev/null'

/** The main thread's CPU time so far, in µs (the thread pool's writes are not in it). */
const mainThreadMicros = () => threadCpuMicros(process.pid, process.pid)
const compute = (us: number) => {
  const until = performance.now() + us / 1000
  while (performance.now() < until);
}
// A request line as request-log.ts writes it.
const LINE = {
  reqId: 'b7b0f1a2-9c1e-4a59-8e0b-5b7f3c2d1e0f',
  method: 'POST',
  url: '/v1/chat/completions',
  team: 'bench',
  key_id: 'k_0123456789ab',
  model: 'meta/llama-3.1-8b-instruct',
  endpoint: 'chat',
  stream: false,
  status: 200,
  upstream_status: 200,
  duration_ms: 1.23,
  gateway_ms: 0.12,
  upstream_ms: 0.9,
  aborted: false,
}

const destinations: [string, () => DestinationStream][] = [
  ['BlockWriter (now)', () => new BlockWriter(pino.destination({ dest: DEST, sync: false }))],
  [
    'sonic-boom, 4 KB minimum (before)',
    () => {
      const d = pino.destination({ dest: DEST, sync: false, minLength: 4096 })
      setInterval(() => d.flush(), 100).unref()
      return d
    },
  ],
  ['sonic-boom, 4 KB minimum, synchronous', () => pino.destination({ dest: DEST, sync: true, minLength: 4096 })],
  ['no destination (serializing only)', () => ({ write() {} })],
]

/** Main-thread µs over N gaps, with a line logged after each or not. */
async function run(log: ((i: number) => void) | null): Promise<number> {
  const before = mainThreadMicros()
  for (let i = 0; i < N; i++) {
    compute(GAP_US)
    log?.(i)
    // Let the event loop turn now and then, as a server's does: sonic-boom's writes complete there.
    if (i % 256 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  return mainThreadMicros() - before
}

const perLine = new Map<string, number[]>(destinations.map(([name]) => [name, []]))
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, make] of round % 2 === 0 ? destinations : [...destinations].reverse()) {
    const logger = pino({ base: { service: 'tollgate' }, timestamp: pino.stdTimeFunctions.epochTime }, make())
    const withLines = await run((i) => logger.info({ ...LINE, duration_ms: i }, 'request'))
    const without = await run(null)
    perLine.get(name)!.push((withLines - without) / N)
  }
}
console.log(`main-thread CPU per log line, lines ${GAP_US} µs apart, ${N} per round, median of ${ROUNDS} rounds, to ${DEST}`)
console.log('| destination | µs per line |\n| --- | --- |')
for (const [name, xs] of perLine) console.log(`| ${name} | ${median(xs).toFixed(2)} |`)
process.exit(0) // (the destinations' flush timers)
