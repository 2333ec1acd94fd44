/**
 * A fast fake upstream for benchmarks: a small JSON completion, or a stream of 64 chunks; in
 * `user: "hold"` a stream sends its first chunk and then stays open (for the memory measurement);
 * `flood` and `long-event` misbehave (bench/hostile.ts).
 *   node --import tsx origin.ts PORT [KEEP_ALIVE_MS]
 */
import { createServer } from 'node:http'

const port = Number(process.argv[2])
const completion = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1,
  model: 'meta/llama-3.1-8b-instruct',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the bench origin.' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 },
})
const chunk = (i: number) =>
  `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"token${i} "},"finish_reason":null}],"usage":null}\n\n`
const usage =
  'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":64,"total_tokens":73}}\n\n'

const server = createServer((req, res) => {
  const parts: Buffer[] = []
  req.on('data', (c: Buffer) => parts.push(c))
  req.on('end', () => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[]}')
      return
    }
    const body = JSON.parse(Buffer.concat(parts).toString() || '{}') as {
      stream?: boolean
      stream_options?: { include_usage?: boolean }
      user?: string
    }
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(completion) }).end(completion)
      return
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' })
    // `user: "flood"`: 100 MB of events and no usage, as fast as the client takes them.
    // `user: "long-event"`: 20 MB of data lines without the blank line that ends an event.
    if (body.user === 'flood' || body.user === 'long-event') {
      const piece = body.user === 'flood' ? chunk(0).repeat(256) : `data: ${'y'.repeat(64 * 1024)}\n`
      let left = Math.ceil(((body.user === 'flood' ? 100 : 20) * 1024 * 1024) / piece.length)
      const more = () => {
        while (left > 0 && !res.destroyed) {
          left--
          if (!res.write(piece)) return void res.once('drain', more)
        }
        if (!res.destroyed) res.end(body.user === 'flood' ? 'data: [DONE]\n\n' : '')
      }
      more()
      return
    }
    // `user: "hold"` (a field gateways pass on; headers they may not): hold the stream open.
    if (body.user === 'hold') {
      res.write(chunk(0)) // then hold the stream open until the client goes
      return
    }
    // 64 chunks written separately, as an upstream generating tokens would.
    let i = 0
    const step = () => {
      if (i < 64) {
        res.write(chunk(i++))
        setImmediate(step)
      } else {
        if (body.stream_options?.include_usage) res.write(usage)
        res.end('data: [DONE]\n\n')
      }
    }
    step()
  })
})
// How long an idle connection stays (ms; Node's 5 s unless given: a slower client, a gateway
// under a profiler say, may need longer not to send a request on a connection this end has just
// closed, which a POST does not survive). The tools keep Node's 5 s: undici opens a fresh connection for each request it aborts (a held stream whose client went
// away), and a minute of those idle ran this process out of open files when the next target held
// its 10,000 streams. The bench's nginx closes its own idle ones at 4 s (run.ts).
if (process.argv[3]) server.keepAliveTimeout = Number(process.argv[3])
server.listen(port, '127.0.0.1', 4096)
