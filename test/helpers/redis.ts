import { afterAll, beforeAll } from 'vitest'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'

/** A real redis-server on a free loopback port, started and stopped by the test that needs it. */

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

export function redisServerBinary(): string {
  const binary = process.env.REDIS_SERVER_BIN ?? 'redis-server'
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' })
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `These tests need a real redis-server, and '${binary}' could not be run (${probe.error?.message ?? `exit ${probe.status}`}). ` +
        'Install it (Debian/Ubuntu: apt-get install redis-server) or set REDIS_SERVER_BIN.',
    )
  }
  return binary
}

export interface RedisServer {
  url: string
  port: number
  process: ChildProcess
  stop(): Promise<void>
  /**
   * Bytes that clients sent this server and it has not read yet (Linux: /proc/net/tcp). With the
   * server stopped (SIGSTOP), above 0 once a command has reached it: a test waits on that, not on
   * a fixed time.
   */
  unread(): number
}

/** Unread bytes on the established loopback connections whose local port is `port`. */
function unreadOn(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  let bytes = 0
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    // sl, local address, remote address, state (01: established), tx_queue:rx_queue, …
    if (f[1] === local && f[3] === '01') bytes += parseInt(f[4]!.split(':')[1]!, 16)
  }
  return bytes
}

export async function startRedis(extraArgs: string[] = [], fixedPort?: number): Promise<RedisServer> {
  const binary = redisServerBinary()
  const port = fixedPort ?? (await freePort())
  // Later arguments win: extraArgs may turn persistence on.
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs], {
    stdio: 'ignore',
  })
  const url = `redis://127.0.0.1:${port}`
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  client.on('error', () => {}) // refusals are expected until the server is up
  const deadline = Date.now() + 10_000
  for (;;) {
    try {
      await client.connect()
      await client.ping()
      break
    } catch (err) {
      client.disconnect()
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL')
        throw new Error(`redis-server did not start on port ${port}: ${(err as Error).message}`, { cause: err })
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  client.disconnect()
  return {
    url,
    port,
    process: child,
    unread: () => unreadOn(port),
    async stop() {
      // A process killed by a signal keeps exitCode null: it has exited all the same.
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGKILL')
      await new Promise((resolve) => child.once('exit', resolve))
    },
  }
}

export interface RedisCluster {
  nodes: { host: string; port: number }[]
  /** REDIS_CLUSTER_NODES for the gateway. */
  env: string
  stop(): Promise<void>
}

/** A real three-master Redis Cluster of redis-server processes on loopback ports. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const { mkdtempSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = mkdtempSync(join(tmpdir(), 'tg-cluster-'))
  const servers: RedisServer[] = []
  try {
    for (let i = 0; i < masters; i++) {
      servers.push(await startRedis(['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${i}.conf`), '--dir', dir]))
    }
    const clients = servers.map((s) => new Redis(s.url))
    const SLOTS = 16_384
    await Promise.all(
      clients.map((c, i) =>
        c.call('CLUSTER', 'ADDSLOTSRANGE', String(Math.floor((i * SLOTS) / masters)), String(Math.floor(((i + 1) * SLOTS) / masters) - 1)),
      ),
    )
    for (const s of servers.slice(1)) await clients[0]!.call('CLUSTER', 'MEET', '127.0.0.1', String(s.port))
    const deadline = Date.now() + 20_000
    for (;;) {
      const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>))
      if (infos.every((info) => info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${masters}`))) break
      if (Date.now() > deadline) throw new Error(`the Redis Cluster did not come up:\n${infos.join('\n')}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    for (const c of clients) c.disconnect()
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()))
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  const nodes = servers.map((s) => ({ host: '127.0.0.1', port: s.port }))
  return {
    nodes,
    env: nodes.map((n) => `${n.host}:${n.port}`).join(','),
    async stop() {
      await Promise.all(servers.map((s) => s.stop()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * For a test file: a redis-server started before its tests and stopped after them, with one
 * client. Read `.client` inside tests (it exists once beforeAll has run).
 */
export function useRedis(): { client: Redis; server: RedisServer } {
  const handle = {} as { client: Redis; server: RedisServer }
  beforeAll(async () => {
    handle.server = await startRedis()
    handle.client = new Redis(handle.server.url)
  })
  afterAll(async () => {
    handle.client.disconnect()
    await handle.server.stop()
  })
  return handle
}
