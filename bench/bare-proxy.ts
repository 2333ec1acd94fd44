/**
 * The floor of a Node hop: Fastify + an undici keep-alive pool passing requests through, no auth,
 * no limits, no accounting.   node --import tsx bare-proxy.ts PORT ORIGIN_URL [REDIS_URL [batched]]
 *
 * With a REDIS_URL, the floor of a hop that keeps an exact limit in Redis: before forwarding, one
 * script call that takes a concurrency slot (INCR, and back if over the limit), and after the
 * answer, one DECR that gives it back: the least a hop can ask of Redis per request and still
 * decide against what every instance sharing it did. ioredis's auto-pipelining sends the commands
 * of one event-loop turn in one write; nothing is batched beyond that turn.
 *
 * With `batched`, the same two steps through the gateway's own group commit (src/redis/batch.ts):
 * the takes (and the give-backs) made while one is in flight go out as one script call, each
 * decided in turn: the floor of a hop that asks Redis with coalescing.
 *
 * With `-` for REDIS_URL and `duties`: no Redis, but the least a gateway that holds the upstream
 * keys and injects defaults must do for every request, by the shortest road: the client's key
 * hashed (SHA-256) and looked up, the body parsed as JSON and sent on with the model's defaults
 * under it, the answer read whole and parsed for its usage, counted in memory, and one pino log
 * line. The floor of the embedded rows.
 */
import { createHash } from 'node:crypto'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { Pool } from 'undici'
import { BatchedScript, type CallSink } from '../src/redis/batch.js'
import type { Arg, LuaScript } from '../src/redis/scripts.js'

const [port, origin, redisUrl, mode] = [Number(process.argv[2]), process.argv[3]!, process.argv[4], process.argv[5]]
const SLOTS = 'bench:floor:inflight'
const LIMIT = 100_000 // never reached: the floor measures the round trip, not refusals
const TAKE = "if redis.call('INCR', KEYS[1]) > tonumber(ARGV[1]) then redis.call('DECR', KEYS[1]) return 0 end return 1"
// ARGV: the number of calls, the limit. One reply per call.
const TAKE_MANY = `local out = {}
for i = 1, tonumber(ARGV[1]) do
  if redis.call('INCR', KEYS[1]) > tonumber(ARGV[2]) then redis.call('DECR', KEYS[1]) out[i] = 0 else out[i] = 1 end
end
return out`
const GIVE_MANY = `redis.call('DECRBY', KEYS[1], ARGV[1])
local out = {}
for i = 1, tonumber(ARGV[1]) do out[i] = 1 end
return out`

const redis = redisUrl && redisUrl !== '-' ? new Redis(redisUrl, { enableAutoPipelining: true }) : null
// (defineCommand: sent by its SHA1, as the gateway sends its scripts)
redis?.defineCommand('take', { numberOfKeys: 1, lua: TAKE })
redis?.defineCommand('takeMany', { numberOfKeys: 1, lua: TAKE_MANY })
redis?.defineCommand('giveMany', { numberOfKeys: 1, lua: GIVE_MANY })
type Scripts = Record<'take' | 'takeMany' | 'giveMany', (key: string, ...args: Arg[]) => Promise<unknown>>
const scripts = redis as unknown as Scripts | null

/** A batch's calls: their number goes to the script, then `extra`. */
class Calls implements CallSink {
  constructor(private readonly extra: Arg[]) {}
  encode(calls: number) {
    return { keys: [SLOTS], args: [calls, ...this.extra] }
  }
}
/** BatchedScript runs what has a LuaScript's `run`: here an ioredis command sent by its SHA1. */
const batched = (name: 'takeMany' | 'giveMany', extra: Arg[]) =>
  new BatchedScript(
    { run: (keys: string[], args: Arg[]) => scripts![name](keys[0]!, ...args) } as unknown as LuaScript,
    () => new Calls(extra),
  )
const takeBatched = mode === 'batched' ? batched('takeMany', [LIMIT]) : null
const giveBatched = mode === 'batched' ? batched('giveMany', []) : null

const take = takeBatched
  ? () => takeBatched.call('floor', () => {}) as Promise<number>
  : () => scripts!.take(SLOTS, LIMIT) as Promise<number>
const give = giveBatched ? () => void giveBatched.call('floor', () => {}) : () => void redis!.decr(SLOTS)
if (redis) await redis.del(SLOTS)
const pool = new Pool(new URL(origin).origin)
const app = Fastify({ logger: false })
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
/** `duties`: the clients' keys by their SHA-256, the model's defaults, usage per key, the log. */
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
const principals = new Map([[sha256('x'), { team: 'bench', keyId: 'key_bench' }]])
const DEFAULTS = { temperature: 1, top_p: 0.95 }
const used = new Map<string, number>()
const log = pino({ base: { service: 'floor' }, timestamp: pino.stdTimeFunctions.epochTime }, pino.destination({ dest: 1, sync: false }))
if (mode === 'duties') {
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body as string))
    } catch (err) {
      done(err as Error)
    }
  })
}
app.post('/v1/chat/completions', async (request, reply) => {
  if (mode === 'duties') {
    const started = performance.now()
    const principal = principals.get(sha256(String(request.headers.authorization).slice('Bearer '.length)))
    if (principal === undefined) return reply.code(401).send({ error: { message: 'invalid key' } })
    const res = await pool.request({
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer nvapi-bench' },
      body: JSON.stringify({ ...DEFAULTS, ...(request.body as object) }),
    })
    reply.raw.once('close', () =>
      log.info(
        { team: principal.team, key_id: principal.keyId, status: res.statusCode, duration_ms: performance.now() - started },
        'request',
      ),
    )
    reply.code(res.statusCode).header('content-type', String(res.headers['content-type']))
    // (A stream goes through as the bare hop's does: its usage is not read here.)
    if ((request.body as { stream?: boolean }).stream === true) return reply.send(res.body)
    const text = await res.body.text()
    const usage = (JSON.parse(text) as { usage?: { total_tokens?: number } }).usage
    used.set(principal.keyId, (used.get(principal.keyId) ?? 0) + (usage?.total_tokens ?? 0))
    return reply.send(text)
  }
  if (redis) {
    if ((await take()) !== 1) return reply.code(429).send({ error: { message: 'over the limit' } })
    reply.raw.once('close', give)
  }
  const res = await pool.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer nvapi-bench' },
    body: request.body as Buffer,
  })
  reply.code(res.statusCode).header('content-type', String(res.headers['content-type']))
  return reply.send(res.body)
})
await app.listen({ port, host: '127.0.0.1', backlog: 4096 })
// Exit cleanly on SIGINT, so `node --cpu-prof` writes its profile (bench/profile.ts).
process.once(
  'SIGINT',
  () =>
    void app.close().then(() => {
      redis?.disconnect()
      process.exit(0)
    }),
)
