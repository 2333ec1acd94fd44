/**
 * The floor of a Node hop: Fastify + an undici keep-alive pool passing requests through, no auth,
 * no limits, no accounting.   node --import tsx bare-proxy.ts PORT ORIGIN_URL
 */
import Fastify from 'fastify'
import { Pool } from 'undici'

const [port, origin] = [Number(process.argv[2]), process.argv[3]!]
const pool = new Pool(new URL(origin).origin)
const app = Fastify({ logger: false })
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
app.post('/v1/chat/completions', async (request, reply) => {
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
process.once('SIGINT', () => void app.close().then(() => process.exit(0)))
