/**
 * The client side of one upstream call, in this process against the bench origin at 64 concurrent
 * requests: CPU per request of undici's request() with the answer read from its stream (how
 * streams are still sent) against the gateway's UpstreamClient reading a non-streaming answer
 * whole through dispatch (WholeBody, src/upstream/client.ts), and undici's request() trimmed of
 * the cancel signal and of three of the five headers, to price those.
 *
 *   npx tsx bench/upstream-client.ts          (from the repository root)
 */
import { Pool } from 'undici'
import { loadConfig } from '../src/config.js'
import { Cancel } from '../src/upstream/abort.js'
import { readAll, UpstreamClient } from '../src/upstream/client.js'
import { BODY, killAll, median, startOrigin } from './lib.js'

const N = 5_000
const C = 64
try {
  const { url } = await startOrigin()
  const upstream = loadConfig({ NVIDIA_BASE_URL: `${url}/v1`, NVIDIA_API_KEY: 'nvapi-made-up-bench-key-0001' }).upstreams.nvidia!
  const client = new UpstreamClient(upstream)
  const pool = new Pool(url, { connections: C })
  const headers = {
    accept: 'application/json',
    'user-agent': 'tollgate/0.1',
    'x-request-id': 'bench',
    'content-type': 'application/json',
    authorization: 'Bearer nvapi-made-up-bench-key-0001',
  }
  const viaClient = (stream: boolean) => async () => {
    const res = await client.request(
      { path: '/chat/completions', method: 'POST', body: BODY, stream, requestId: 'bench', signal: new Cancel() },
      'nvapi-made-up-bench-key-0001',
    )
    await readAll(res.body)
  }
  const viaRequest = (h: Record<string, string>) => async () => {
    const res = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { ...h }, body: BODY })
    await readAll(res.body)
  }
  const ways: [string, () => Promise<void>][] = [
    ['request(), five headers, a cancel signal, read from the stream', viaClient(true)],
    ['request(), five headers, no signal', viaRequest(headers)],
    ['request(), two headers, no signal', viaRequest({ 'content-type': headers['content-type'], authorization: headers.authorization })],
    ['UpstreamClient, read whole (dispatch, WholeBody), a cancel signal', viaClient(false)],
  ]
  const cpu = new Map<string, number[]>(ways.map(([name]) => [name, []]))
  for (let round = 0; round < 12; round++) {
    for (const [name, call] of round % 2 === 0 ? ways : [...ways].reverse()) {
      let left = N
      const before = process.cpuUsage()
      await Promise.all(
        Array.from({ length: C }, async () => {
          while (left-- > 0) await call()
        }),
      )
      const used = process.cpuUsage(before)
      if (round > 0) cpu.get(name)!.push((used.user + used.system) / N)
    }
  }
  console.log(`| way | client CPU µs/request (median of 11 rounds of ${N} at c=${C}) |\n| --- | --- |`)
  for (const [name, t] of cpu) console.log(`| ${name} | ${median(t).toFixed(1)} |`)
  await pool.close()
  await client.close()
} finally {
  killAll()
}
