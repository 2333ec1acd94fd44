/**
 * What one hostile request does to everyone else: the gateway (dist) with the embedded store,
 * /healthz asked one request after another while the request is processed, and the event loop's
 * delay inside the gateway over the same time (tollgate_nodejs_eventloop_lag_max_seconds, which /metrics
 * resets at each scrape), and the growth of the gateway's RSS. Each scenario against an idle
 * baseline, in one run.
 *
 *   npm run build && cd bench && node --import tsx hostile.ts        (BENCH_ROUNDS=3)
 */
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { benchKey, killAll, median, quantile, startGateway, startOrigin } from './lib.js'

const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3))

function randomWords(bytes: number, seed: number): string {
  let x = seed
  const parts: string[] = []
  let size = 0
  while (size < bytes) {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31
    const word = x.toString(36).slice(0, 2 + (x % 8))
    parts.push(word)
    size += word.length + 1
  }
  return parts.join(' ')
}

const chat = (content: string, extra: object = {}) =>
  JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content }], max_tokens: 16, ...extra })

interface Scenario {
  name: string
  /** Sends the hostile request and resolves when the gateway is done with it. */
  send(base: string, keys: Keys, round: number): Promise<void>
}
interface Keys {
  limited: string
  free: string
}

const post = async (base: string, key: string, body: string, abandon = false) => {
  const controller = new AbortController()
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body,
    signal: controller.signal,
  })
  if (!abandon) {
    await res.arrayBuffer()
    return
  }
  // A client that leaves a stream after its first bytes: the gateway estimates the prompt's usage.
  await res.body!.getReader().read()
  controller.abort()
  await sleep(2_000)
}

const SCENARIOS: Scenario[] = [
  { name: 'idle (no hostile request)', send: () => sleep(2_000) },
  { name: '200 KB one-word prompt, token-limited team', send: (base, k) => post(base, k.limited, chat('x'.repeat(200_000))) },
  {
    name: '4 MB random-words prompt, token-limited team',
    send: (base, k, r) => post(base, k.limited, chat(randomWords(4_000_000, 11 + r))),
  },
  {
    name: '8 MB random-words prompt, token-limited team',
    send: (base, k, r) => post(base, k.limited, chat(randomWords(8_000_000, 23 + r))),
  },
  {
    name: '2 MB random-words stream left by its client, team without limits',
    send: (base, k, r) => post(base, k.free, chat(randomWords(2_000_000, 37 + r), { stream: true, user: 'hold' }), true),
  },
  {
    name: 'upstream: 20 MB event without its blank line (cut at 8 MiB)',
    send: (base, k) => post(base, k.free, chat('hi', { stream: true, user: 'long-event' })),
  },
  {
    name: 'upstream: 100 MB stream without usage (estimated)',
    send: (base, k) => post(base, k.free, chat('hi', { stream: true, user: 'flood' })),
  },
]

const lagMax = async (base: string) => {
  const text = await (await fetch(`${base}/metrics`)).text()
  return Number(/^tollgate_nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1] ?? NaN) * 1000
}

const origin = await startOrigin()
const { base, server } = await startGateway(origin.url)
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))![1]) / 1024
try {
  const keys: Keys = { limited: await benchKey(base, 'limited', { tokens_per_minute: 1_000_000_000 }), free: await benchKey(base, 'free') }
  const probe = new Pool(base, { connections: 1 })
  const rows = new Map<string, { p50: number[]; max: number[]; lag: number[]; probes: number[]; rss: number[] }>()
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of SCENARIOS) {
      await lagMax(base) // resets the gateway's event-loop histogram
      const rssBefore = rss()
      let rssPeak = rssBefore
      const latencies: number[] = []
      let done = false
      const sending = s.send(base, keys, round).finally(() => (done = true))
      while (!done) {
        const t = performance.now()
        const res = await probe.request({ path: '/healthz', method: 'GET' })
        await res.body.dump()
        latencies.push(performance.now() - t)
        rssPeak = Math.max(rssPeak, rss())
      }
      await sending
      const row = rows.get(s.name) ?? { p50: [], max: [], lag: [], probes: [], rss: [] }
      row.rss.push(rssPeak - rssBefore)
      row.p50.push(quantile(latencies, 0.5))
      row.max.push(Math.max(...latencies))
      row.lag.push(await lagMax(base))
      row.probes.push(latencies.length)
      rows.set(s.name, row)
    }
  }
  await probe.close()
  console.log(`/healthz while one hostile request is processed (medians over ${ROUNDS} rounds; ms)`)
  console.log('| scenario | /healthz p50 | /healthz max | event-loop delay max | probes answered | RSS growth (MB) |')
  console.log('| --- | --- | --- | --- | --- | --- |')
  for (const [name, r] of rows) {
    console.log(
      `| ${name} | ${median(r.p50).toFixed(2)} | ${median(r.max).toFixed(1)} | ${median(r.lag).toFixed(1)} | ${median(r.probes)} | ${median(r.rss).toFixed(0)} |`,
    )
  }
} finally {
  killAll()
  origin.process.kill('SIGKILL')
}
