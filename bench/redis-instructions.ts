/**
 * Redis's own instructions per request for the gateway's quota work, counted by valgrind's
 * callgrind (steady where Redis's CPU time on a shared machine is not): redis-server runs under
 * callgrind while `RedisQuotas` admits, settles and audits requests at 64 at a time, as under load
 * (so they go in batches); SHUTDOWN makes callgrind write its totals. Two runs of different sizes,
 * the difference divided by the difference in requests, so start-up and warm-up drop out. Also
 * prints the share of number parsing and formatting (strtod, printf) in the larger run.
 *
 *   cd bench && node --import tsx redis-instructions.ts          (RI_N=6000, RI_C=64)
 *   RI_STEPS=admit ... (admissions only)   RI_STEPS=settle ... (admissions and settlements): each
 *   script's share, by difference
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { RedisQuotas } from '../src/quota/redis.js'
import { freePort } from '../test/helpers/redis.js'
import { quotaWork, type QuotaSteps } from './lib.js'

const N = Number(process.env.RI_N ?? 6000)
const C = Number(process.env.RI_C ?? 64)
const WARM = 1000
const STEPS = (process.env.RI_STEPS ?? 'all') as QuotaSteps
if (!['admit', 'settle', 'all'].includes(STEPS)) throw new Error('RI_STEPS: admit, settle or all')

/** Runs `requests` (after the warm-up) against a redis-server under callgrind; returns its output file. */
async function measure(requests: number): Promise<string> {
  const out = join(mkdtempSync(join(tmpdir(), 'tollgate-redis-cg-')), 'callgrind.out')
  const port = await freePort()
  const server = spawn(
    'valgrind',
    ['--tool=callgrind', `--callgrind-out-file=${out}`, 'redis-server', '--port', String(port), '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  )
  const exited = new Promise((resolve) => server.once('exit', resolve))
  const client = new Redis(`redis://127.0.0.1:${port}`, { enableAutoPipelining: true, retryStrategy: () => 200 })
  client.on('error', () => {})
  for (const deadline = Date.now() + 120_000; ;) {
    if (
      await client.ping().then(
        () => true,
        () => false,
      )
    )
      break
    if (Date.now() > deadline) throw new Error('redis-server under valgrind did not start')
    await sleep(200)
  }
  await quotaWork(new RedisQuotas({ client }), WARM + requests, C, STEPS)
  await client.call('shutdown', 'nosave').catch(() => undefined) // the connection closes: no reply
  await exited
  client.disconnect()
  return out
}

const total = (file: string) => Number(/^totals: (\d+)/m.exec(readFileSync(file, 'utf8'))?.[1])
const small = await measure(N / 3)
const large = await measure(N)
const perRequest = (total(large) - total(small)) / (N - N / 3)
const annotated = spawnSync('callgrind_annotate', [large], { encoding: 'utf8' }).stdout
const numbers = annotated
  .split('\n')
  .filter((l) => /^\s*[\d,]+ /.test(l) && /strtod|str_to_mpn|round_and_return|printf_fp|hack_digit|mpn_/.test(l))
  .reduce((sum, l) => sum + Number(l.trim().split(' ')[0]!.replaceAll(',', '')), 0)
const work = { admit: 'admission', settle: 'admission + settlement', all: 'admission + settlement + audit entry' }[STEPS]
console.log(`Redis instructions per request (${work}, c=${C}, ${N / 3} and ${N} requests): ${(perRequest / 1000).toFixed(1)} k`)
console.log(
  `number parsing and formatting (strtod, printf) in the ${N}-request run: ${((100 * numbers) / total(large)).toFixed(1)} % of its instructions`,
)
