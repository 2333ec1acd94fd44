import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../../src/app.js'
import { loadConfig, type Env } from '../../src/config.js'
import type { Store } from '../../src/store/types.js'
import { afterAll, beforeAll } from 'vitest'
import { FakeUpstream } from './fake-upstream.js'
import { startRedis, type RedisServer } from './redis.js'

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef'

export interface TestGateway {
  app: FastifyInstance
  /** http://127.0.0.1:PORT */
  url: string
  /** Every log line the gateway wrote, raw. */
  logs: string[]
  logLines(): Record<string, unknown>[]
  admin(method: string, path: string, body?: unknown): Promise<Response>
  /** Creates a team (if needed) and a key for it through the admin API; returns the plaintext key. */
  createKey(team?: string): Promise<{ id: string; key: string }>
  close(): Promise<void>
}

export interface TestGatewayOptions {
  upstream?: FakeUpstream
  env?: Env
  files?: Record<string, string>
  store?: Store
  now?: () => number
}

/** Builds the real app from an environment (as the entry file would) and listens on a free port. */
export async function startGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const env: Env = {
    ADMIN_TOKEN,
    LOG_LEVEL: 'debug',
    ...(options.upstream
      ? {
          NVIDIA_BASE_URL: options.upstream.baseUrl,
          NVIDIA_STATUS_URL: options.upstream.statusUrl,
          NVIDIA_API_KEY: options.upstream.apiKeys.join(','),
        }
      : {}),
    ...options.env,
  }
  const files = options.files ?? {}
  const config = loadConfig(env, (path) => {
    const text = files[path]
    if (text === undefined) throw new Error(`ENOENT: no such file '${path}'`)
    return text
  })
  const logs: string[] = []
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean))
      cb()
    },
  })
  const deps: AppDeps = { logStream }
  if (options.store) deps.store = options.store
  if (options.now) deps.now = options.now
  const app = await buildApp(config, deps)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const url = `http://127.0.0.1:${port}`

  const admin = (method: string, path: string, body?: unknown) =>
    fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })

  return {
    app,
    url,
    logs,
    logLines: () => logs.map((l) => JSON.parse(l) as Record<string, unknown>),
    admin,
    async createKey(team = 'ml') {
      const created = await admin('POST', '/admin/teams', { id: team })
      if (created.status !== 201 && created.status !== 409) throw new Error(`team create: ${created.status} ${await created.text()}`)
      const res = await admin('POST', `/admin/teams/${team}/keys`, { name: 'test' })
      if (res.status !== 201) throw new Error(`key create: ${res.status} ${await res.text()}`)
      return (await res.json()) as { id: string; key: string }
    },
    async close() {
      // Teardown: clients may hold connections open (undici opens spares); cut them all.
      const closing = app.close()
      app.server.closeAllConnections()
      await closing
    },
  }
}

/** OpenAI's error envelope, as the tests read it. */
export type Envelope = { error: { message: string; type: string; param: string | null; code: string | null } }

/** Starts a gateway for one test and closes it afterwards, whatever happens. */
export async function withGateway<T>(options: TestGatewayOptions, use: (gw: TestGateway) => Promise<T>): Promise<T> {
  const gw = await startGateway(options)
  try {
    return await use(gw)
  } finally {
    await gw.close()
  }
}

/**
 * For a test file: a fake upstream and a gateway in front of it with one client key, started
 * before the file's tests and closed after them. Read the fields inside tests.
 */
export function useGateway(options: Omit<TestGatewayOptions, 'upstream'> = {}, team = 'ml') {
  const handle = {} as { upstream: FakeUpstream; gw: TestGateway; key: string; keyId: string }
  beforeAll(async () => {
    handle.upstream = await new FakeUpstream().start()
    handle.gw = await startGateway({ ...options, upstream: handle.upstream })
    const created = await handle.gw.createKey(team)
    handle.key = created.key
    handle.keyId = created.id
  })
  afterAll(async () => {
    await handle.gw.close()
    await handle.upstream.close()
  })
  return handle
}

/** Opens a stream (waiting its turn while it gets 429s), reads its first bytes, and walks away. */
export async function abandonStream(open: (signal: AbortSignal) => Promise<Response>, pauseMs = 5): Promise<void> {
  for (;;) {
    const controller = new AbortController()
    const res = await open(controller.signal)
    if (res.status === 429) {
      await res.text()
      await new Promise((r) => setTimeout(r, pauseMs))
      continue
    }
    if (res.status !== 200) throw new Error(`stream answered ${res.status}`)
    await res.body!.getReader().read()
    controller.abort()
    return
  }
}

/**
 * For a test file: a fake upstream and a redis-server, started before the file's tests and stopped
 * after them. Read the fields inside tests.
 */
export function useUpstreamAndRedis() {
  const handle = {} as { upstream: FakeUpstream; redis: RedisServer }
  beforeAll(async () => {
    handle.upstream = await new FakeUpstream().start()
    handle.redis = await startRedis()
  })
  afterAll(async () => {
    await handle.redis.stop()
    await handle.upstream.close()
  })
  return handle
}

/**
 * For a describe block: a gateway in front of the file's fake upstream, on the embedded store or on
 * the file's redis-server, with this config file, started before the block's tests and closed after.
 */
export function useGatewayOn(store: 'embedded' | 'redis', parts: { upstream: FakeUpstream; redis: RedisServer }, config: string) {
  const handle = {} as { gw: TestGateway }
  beforeAll(async () => {
    handle.gw = await startGateway({
      upstream: parts.upstream,
      env: { TOLLGATE_CONFIG: '/c.yaml', ...(store === 'redis' ? { REDIS_URL: parts.redis.url } : {}) },
      files: { '/c.yaml': config },
    })
  })
  afterAll(async () => {
    await handle.gw.close()
  })
  return handle
}
