import { describe, expect, it } from 'vitest'
import { ConfigError, DEFAULT_NVIDIA_BASE_URL, loadConfig, type Env } from '../../src/config.js'

const files = (map: Record<string, string>) => (path: string) => {
  if (map[path] === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`)
  return map[path]!
}

function problems(env: Env, map: Record<string, string> = {}): string[] {
  try {
    loadConfig(env, files(map))
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return (err as ConfigError).problems
  }
  throw new Error('expected a ConfigError')
}

describe('built-in defaults (no config file)', () => {
  it('listens on 0.0.0.0:8080, routes every model to NVIDIA, and knows minimax-m2.1', () => {
    const config = loadConfig({})
    expect(config).toMatchObject({
      port: 8080,
      host: '0.0.0.0',
      logLevel: 'info',
      bodyLimitBytes: 10 * 1024 * 1024,
      redisUrl: null,
      adminToken: null,
      defaultUpstream: 'nvidia',
    })
    expect(config.upstreams.nvidia).toMatchObject({ baseUrl: DEFAULT_NVIDIA_BASE_URL, apiKeys: [] })
    expect(config.models['minimaxai/minimax-m2.1']).toEqual({
      name: 'minimaxai/minimax-m2.1',
      upstream: 'nvidia',
      upstreamModel: 'minimaxai/minimax-m2.1',
      defaults: { temperature: 1, top_p: 0.95, max_tokens: 8192 },
      fallbacks: [],
      price: null,
    })
    expect(config.upstreams.nvidia).toMatchObject({ keyBudgets: [], retries: 2, retryBaseMs: 250, keyWaitMs: 10_000 })
  })

  it('reads the contract environment variables', () => {
    const config = loadConfig({
      PORT: '9000',
      HOST: '127.0.0.1',
      NVIDIA_API_KEY: ' nvapi-a , nvapi-b,',
      NVIDIA_BASE_URL: 'http://localhost:1234/v1/',
      REDIS_URL: 'redis://localhost:6379/2',
      ADMIN_TOKEN: 'a'.repeat(32),
      LOG_LEVEL: 'DEBUG',
      BODY_LIMIT_BYTES: '2048',
    })
    expect(config).toMatchObject({
      port: 9000,
      host: '127.0.0.1',
      redisUrl: 'redis://localhost:6379/2',
      adminToken: 'a'.repeat(32),
      logLevel: 'debug',
      bodyLimitBytes: 2048,
    })
    expect(config.upstreams.nvidia).toMatchObject({ baseUrl: 'http://localhost:1234/v1', apiKeys: ['nvapi-a', 'nvapi-b'] })
  })
})

describe('bad environment', () => {
  it('names every problem at once', () => {
    const found = problems({
      PORT: 'eighty',
      LOG_LEVEL: 'loud',
      REDIS_URL: 'http://x',
      NVIDIA_BASE_URL: 'not a url',
      ADMIN_TOKEN: 'short',
      BODY_LIMIT_BYTES: '12',
    })
    expect(found).toHaveLength(6)
    for (const name of ['PORT', 'LOG_LEVEL', 'REDIS_URL', 'NVIDIA_BASE_URL', 'ADMIN_TOKEN', 'BODY_LIMIT_BYTES']) {
      expect(
        found.some((p) => p.startsWith(`${name}:`)),
        name,
      ).toBe(true)
    }
  })

  it('refuses a port out of range', () => {
    expect(problems({ PORT: '70000' })[0]).toContain('between 0 and 65535')
  })
})

describe('the config file', () => {
  const full = `
upstreams:
  nvidia:
    base_url: https://integrate.api.nvidia.com/v1
    timeouts: { connect_ms: 2000, headers_ms: 60000, idle_ms: 30000 }
  local:
    base_url: http://127.0.0.1:8000/v1/
    api_key_env: LOCAL_KEY
models:
  minimaxai/minimax-m2.1:
    defaults: { temperature: 0.7 }
  my-llama:
    upstream: local
    upstream_model: meta/llama-3.1-8b-instruct
    defaults: { max_tokens: 512, seed: 7, chat_template_kwargs: { thinking: true } }
aliases:
  minimax: minimaxai/minimax-m2.1
  fast: my-llama
models_cache_seconds: 5
`

  it('adds upstreams, models, aliases and defaults; the file replaces a built-in model whole', () => {
    const config = loadConfig(
      { TOLLGATE_CONFIG: '/etc/tg.yaml', NVIDIA_API_KEY: 'nvapi-1', LOCAL_KEY: 'k1,k2' },
      files({ '/etc/tg.yaml': full }),
    )
    expect(config.upstreams.nvidia).toMatchObject({ apiKeys: ['nvapi-1'], timeouts: { connectMs: 2000, headersMs: 60000, idleMs: 30000 } })
    expect(config.upstreams.local).toMatchObject({ baseUrl: 'http://127.0.0.1:8000/v1', apiKeys: ['k1', 'k2'] })
    expect(config.models['minimaxai/minimax-m2.1']!.defaults).toEqual({ temperature: 0.7 })
    expect(config.models['my-llama']).toEqual({
      name: 'my-llama',
      upstream: 'local',
      upstreamModel: 'meta/llama-3.1-8b-instruct',
      defaults: { max_tokens: 512, seed: 7, chat_template_kwargs: { thinking: true } },
      fallbacks: [],
      price: null,
    })
    expect(config.aliases).toEqual({ minimax: 'minimaxai/minimax-m2.1', fast: 'my-llama' })
    expect(config.modelsCacheMs).toBe(5000)
    expect(config.configFile).toBe('/etc/tg.yaml')
  })

  it('names every problem with its path and why', () => {
    const bad = `
upstreams:
  local:
    base_url: ftp://example.com
    api_key_env: MISSING_VAR
    timeouts: { connect_ms: -1 }
    colour: blue
models:
  a/b:
    upstream: nowhere
    defaults: { temperature: 9, messages: [], max_tokens: 1.5 }
aliases:
  x: y
`
    const found = problems({ TOLLGATE_CONFIG: '/c.yaml' }, { '/c.yaml': bad })
    const text = found.join('\n')
    expect(text).toContain('upstreams.local.base_url')
    expect(text).toContain('upstreams.local.timeouts.connect_ms')
    expect(text).toContain('upstreams.local.colour: unknown field')
    expect(text).toContain('models["a/b"].defaults.temperature')
    expect(text).toContain('models["a/b"].defaults.messages')
    expect(text).toContain('models["a/b"].defaults.max_tokens')
    for (const p of found) expect(p.startsWith('/c.yaml: ')).toBe(true)
  })

  it('checks references between sections', () => {
    const bad = `
default_upstream: null
models:
  a/b:
    upstream: nowhere
  c/d: {}
aliases:
  x: y
  z: x
upstreams:
  u:
    base_url: http://localhost:1/v1
    api_key_env: NOT_SET_ANYWHERE
`
    const text = problems({ TOLLGATE_CONFIG: '/c.yaml' }, { '/c.yaml': bad }).join('\n')
    expect(text).toContain('models["a/b"].upstream: no upstream named "nowhere"')
    expect(text).toContain('models["c/d"].upstream: required when default_upstream is null')
    expect(text).toContain('aliases["x"]: no model named "y"')
    expect(text).toContain('api_key_env: environment variable NOT_SET_ANYWHERE is not set')
  })

  it('reads key budgets, retries and fallbacks, and checks them', () => {
    const yaml = `
upstreams:
  nvidia:
    base_url: http://127.0.0.1:1/v1
    key_requests_per_minute: [40, null, 1000]
    retries: 3
    retry_base_ms: 10
    key_wait_ms: 500
models:
  a/b:
    fallbacks: [c/d, minimaxai/minimax-m2.1]
`
    const config = loadConfig({ TOLLGATE_CONFIG: '/c', NVIDIA_API_KEY: 'k1,k2,k3' }, () => yaml)
    expect(config.upstreams.nvidia).toMatchObject({ keyBudgets: [40, null, 1000], retries: 3, retryBaseMs: 10, keyWaitMs: 500 })
    expect(config.models['a/b']!.fallbacks).toEqual(['c/d', 'minimaxai/minimax-m2.1'])
    expect(
      loadConfig({ NVIDIA_API_KEY: 'k1,k2', NVIDIA_KEY_REQUESTS_PER_MINUTE: '40', NVIDIA_RETRIES: '0' }).upstreams.nvidia,
    ).toMatchObject({ keyBudgets: [40, 40], retries: 0 })

    const mismatch = problems(
      { TOLLGATE_CONFIG: '/c', NVIDIA_API_KEY: 'k1,k2' },
      { '/c': 'upstreams:\n  nvidia:\n    base_url: http://x/v1\n    key_requests_per_minute: [1]\n' },
    )
    expect(mismatch.join('\n')).toContain('key_requests_per_minute: 1 budgets for 2 keys')
    const self = problems({ TOLLGATE_CONFIG: '/c' }, { '/c': 'models:\n  a/b:\n    fallbacks: [a/b]\n' })
    expect(self.join('\n')).toContain('cannot fall back to itself')
  })

  it('reports YAML syntax errors with the line, and a missing file', () => {
    expect(problems({ TOLLGATE_CONFIG: '/c.yaml' }, { '/c.yaml': 'models:\n  a: [1,\n' })[0]).toMatch(/line \d+/)
    expect(problems({ TOLLGATE_CONFIG: '/nope.yaml' })[0]).toContain('cannot read /nope.yaml')
  })

  it('treats an empty file as no settings', () => {
    expect(loadConfig({ TOLLGATE_CONFIG: '/c.yaml' }, files({ '/c.yaml': '' })).models['minimaxai/minimax-m2.1']).toBeDefined()
  })
})

describe('the shipped examples', () => {
  it('examples/tollgate.yaml is a valid config', async () => {
    const { readFileSync } = await import('node:fs')
    const config = loadConfig({ TOLLGATE_CONFIG: 'examples/tollgate.yaml', NVIDIA_API_KEY: 'nvapi-test' }, (p) => readFileSync(p, 'utf8'))
    expect(config.aliases.minimax).toBe('minimaxai/minimax-m2.1')
    expect(config.models['minimaxai/minimax-m2.1']!.defaults).toEqual({ temperature: 1, top_p: 0.95, max_tokens: 8192 })
    expect(config.teams.find((t) => t.id === 'ml')!.allowed_models).toEqual(['minimaxai/*', 'meta/llama-3.1-*'])
  })

  it("reads a team's allowed_models (absent: every model), naming a bad pattern by its path", () => {
    const yaml = 'teams:\n  a:\n    allowed_models: ["minimaxai/*"]\n  b: {}\n'
    const config = loadConfig({ TOLLGATE_CONFIG: '/c.yaml' }, files({ '/c.yaml': yaml }))
    expect(config.teams.map((t) => [t.id, t.allowed_models])).toEqual([
      ['a', ['minimaxai/*']],
      ['b', null],
    ])
    const found = problems({ TOLLGATE_CONFIG: '/c.yaml' }, { '/c.yaml': 'teams:\n  a:\n    allowed_models: ["ok/*", "not ok"]\n' })
    expect(found).toEqual([expect.stringMatching(/^\/c\.yaml: teams\.a\.allowed_models\[1\]: may hold only letters/)])
  })
})

describe('the limits the gateway keeps for itself', () => {
  it('have generous defaults, and each an environment variable', () => {
    expect(loadConfig({}).guards).toEqual({
      streamMaxBytes: 256 * 1024 * 1024,
      streamMaxMs: 7_200_000,
      streamMaxEventBytes: 8 * 1024 * 1024,
      answerMaxBytes: 64 * 1024 * 1024,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      maxConnections: 16_384,
    })
    const env = {
      STREAM_MAX_BYTES: '2048',
      STREAM_MAX_SECONDS: '5',
      STREAM_MAX_EVENT_BYTES: '1024',
      ANSWER_MAX_BYTES: '4096',
      HEADERS_TIMEOUT_MS: '500',
      REQUEST_TIMEOUT_MS: '900',
      MAX_CONNECTIONS: '10',
    }
    expect(loadConfig(env).guards).toEqual({
      streamMaxBytes: 2048,
      streamMaxMs: 5000,
      streamMaxEventBytes: 1024,
      answerMaxBytes: 4096,
      headersTimeoutMs: 500,
      requestTimeoutMs: 900,
      maxConnections: 10,
    })
  })

  it('refuse nonsense, naming each', () => {
    expect(
      problems({ STREAM_MAX_SECONDS: '0', MAX_CONNECTIONS: 'lots', HEADERS_TIMEOUT_MS: '20000', REQUEST_TIMEOUT_MS: '10000' }),
    ).toEqual([
      'STREAM_MAX_SECONDS: must be between 1 and 604800, got 0',
      'MAX_CONNECTIONS: must be a whole number, got "lots"',
      'REQUEST_TIMEOUT_MS: must be at least HEADERS_TIMEOUT_MS (20000), got 10000',
    ])
  })

  it('TRUST_PROXY=true believes one proxy hop, not every X-Forwarded-For entry', () => {
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(1)
    expect(loadConfig({ TRUST_PROXY: '2' }).trustProxy).toBe(2)
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8' }).trustProxy).toBe('10.0.0.0/8')
  })
})
