/**
 * The floor of a Node hop: Fastify + an undici keep-alive pool passing requests through, no auth,
 * no limits, no accounting.   node --import tsx bare-proxy.ts PORT ORIGIN_URL [REDIS_URL]
 *
 * With a REDIS_URL, the floor of a hop that keeps an exact limit in Redis: before forwarding, one
 * script call that takes a concurrency slot (INCR, and back if over the limit), and after the
 * answer, one DECR that gives it back: the least a hop can ask of Redis per request and still
 * decide against what every instance sharing it did. ioredis's auto-pipelining sends the commands
 * of one event-loop turn in one write; nothing is batched beyond that turn (the gateway's group
 * commit is).
 */
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { Pool } from 'undici'

const [port, origin, redisUrl] = [Number(process.argv[2]), process.argv[3]!, process.argv[4]]
const SLOTS = 'bench:floor:inflight'
const LIMIT = 100_000 // never reached: the floor measures the round trip, not refusals
const TAKE = "if redis.call('INCR', KEYS[1]) > tonumber(ARGV[1]) then redis.call('DECR', KEYS[1]) return 0 end return 1"

const redis = redisUrl ? new Redis(redisUrl, { enableAutoPipelining: true }) : null
// (defineCommand: sent by its SHA1, as the gateway sends its scripts)
redis?.defineCommand('take', { numberOfKeys: 1, lua: TAKE })
const take = (redis as unknown as { take(key: string, limit: number): Promise<number> } | null)?.take.bind(redis)
if (redis) await redis.del(SLOTS)
const pool = new Pool(new URL(origin).origin)
const app = Fastify({ logger: false })
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
app.post('/v1/chat/completions', async (request, reply) => {
  if (redis) {
    if ((await take!(SLOTS, LIMIT)) !== 1) return reply.code(429).send({ error: { message: 'over the limit' } })
    reply.raw.once('close', () => void redis.decr(SLOTS))
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
