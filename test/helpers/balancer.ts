import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A round-robin HTTP load balancer, standing in for nginx in front of gateway replicas: each
 * request goes to the next backend, its body and answer streamed through as they come.
 */
export interface Balancer {
  url: string
  /** Requests sent to each backend, in backend order. */
  counts: number[]
  close(): Promise<void>
}

export async function startBalancer(backends: string[]): Promise<Balancer> {
  const counts = backends.map(() => 0)
  let next = 0
  const server: Server = createServer((req, res) => {
    const i = next++ % backends.length
    counts[i]!++
    const target = new URL(req.url ?? '/', backends[i])
    const upstream = httpRequest(target, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
    res.on('close', () => upstream.destroy())
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}
