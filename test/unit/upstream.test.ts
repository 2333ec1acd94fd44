import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { describeUpstreamBody, mapTransportError, normaliseUpstreamError } from '../../src/upstream/errors.js'
import { retryAfterMs } from '../../src/upstream/dispatch.js'
import { KeyRefusals } from '../../src/upstream/key-events.js'
import { applyDefaults, MAX_MODEL_LABELS, ModelRouter } from '../../src/upstream/router.js'
import { scrubSecrets, secretPattern } from '../../src/upstream/scrub.js'

describe('describeUpstreamBody reads every NVIDIA error shape', () => {
  it.each([
    ['{"status":403,"title":"Forbidden","detail":"Authorization failed"}', { message: 'Forbidden: Authorization failed' }],
    ['{"status":429,"title":"Too Many Requests"}', { message: 'Too Many Requests' }],
    [
      '{"error":"body -> x\\n  Extra inputs are not permitted (type=extra_forbidden)"}',
      { message: 'body -> x\n  Extra inputs are not permitted (type=extra_forbidden)' },
    ],
    [
      '{"message":"Internal server error","type":"internal_server_error","code":500}',
      { message: 'Internal server error', type: 'internal_server_error' },
    ],
    [
      '{"error":{"message":"ResourceExhausted","type":"Service Unavailable","code":503}}',
      { message: 'ResourceExhausted', type: 'Service Unavailable' },
    ],
    [
      '{"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":"invalid_value"}}',
      { message: 'bad', type: 'invalid_request_error', param: 'messages', code: 'invalid_value' },
    ],
    ["Header of type 'authorization' was missing", { message: "Header of type 'authorization' was missing" }],
    ['', {}],
    ['[1,2]', { message: '[1,2]' }],
  ])('%s', (body, expected) => {
    const found = describeUpstreamBody(body)
    for (const [k, v] of Object.entries(expected)) expect(found[k as keyof typeof found]).toBe(v)
    if (Object.keys(expected).length === 0) expect(found.message).toBeUndefined()
  })
})

describe('normaliseUpstreamError', () => {
  const scrub = (s: string) => s.replace('SECRET', '[redacted]')

  it('keeps an upstream OpenAI-style code and param', () => {
    const n = normaliseUpstreamError(
      'nvidia',
      400,
      '{"error":{"message":"bad SECRET","type":"x","param":"messages","code":"invalid_value"}}',
      scrub,
    )
    expect(n).toEqual({
      status: 400,
      credentialsRefused: false,
      body: {
        error: {
          message: "Upstream 'nvidia' answered 400: bad [redacted]",
          type: 'invalid_request_error',
          param: 'messages',
          code: 'invalid_value',
        },
      },
    })
  })

  it('turns 401 and 403 into a 502 that says whose key was refused', () => {
    for (const status of [401, 403]) {
      const n = normaliseUpstreamError('nvidia', status, 'nope', scrub)
      expect(n.status).toBe(502)
      expect(n.credentialsRefused).toBe(true)
      expect(n.body.error.code).toBe('upstream_auth_failed')
    }
  })

  it('bounds very long messages', () => {
    const n = normaliseUpstreamError('nvidia', 500, 'x'.repeat(100_000), scrub)
    expect(n.body.error.message.length).toBeLessThan(2_100)
  })
})

describe('mapTransportError', () => {
  it.each([
    ['UND_ERR_HEADERS_TIMEOUT', 504, 'upstream_timeout'],
    ['UND_ERR_BODY_TIMEOUT', 504, 'upstream_timeout'],
    ['UND_ERR_CONNECT_TIMEOUT', 504, 'upstream_timeout'],
    ['ECONNREFUSED', 502, 'upstream_unreachable'],
    ['UND_ERR_SOCKET', 502, 'upstream_unreachable'],
  ])('%s → %i', (code, status, expected) => {
    const err = mapTransportError('nvidia', Object.assign(new Error('x'), { code }))
    expect(err.statusCode).toBe(status)
    expect(err.code).toBe(expected)
  })
})

describe('routing and defaults', () => {
  const yaml = 'aliases:\n  m2: minimaxai/minimax-m2.1\n  anything: some/unlisted-model\n'
  const config = loadConfig({ TOLLGATE_CONFIG: '/c' }, () => yaml)
  const router = new ModelRouter(config)

  it('resolves configured models, aliases and unlisted names', () => {
    expect(router.resolve('m2')!.model.upstreamModel).toBe('minimaxai/minimax-m2.1')
    expect(router.resolve('anything')!.model).toMatchObject({ upstreamModel: 'some/unlisted-model', defaults: {} })
    expect(router.resolve('x/y')!.upstream.name).toBe('nvidia')
  })

  it('the client wins, defaults fill gaps, twins are respected, and the model is the upstream name', () => {
    const resolved = router.resolve('m2')!
    expect(applyDefaults({ model: 'm2', messages: [], temperature: 0 }, resolved, true)).toEqual({
      model: 'minimaxai/minimax-m2.1',
      messages: [],
      temperature: 0,
      top_p: 0.95,
      max_tokens: 8192,
    })
    expect(applyDefaults({ model: 'm2', messages: [], max_completion_tokens: 5 }, resolved, true)).not.toHaveProperty('max_tokens')
    expect(applyDefaults({ model: 'm2', input: 'x' }, resolved, false)).toEqual({ model: 'minimaxai/minimax-m2.1', input: 'x' })
  })

  it('answers null for unknown models when nothing routes them', () => {
    const strict = new ModelRouter(loadConfig({ TOLLGATE_CONFIG: '/c' }, () => 'default_upstream: null\n'))
    expect(strict.resolve('x/y')).toBeNull()
  })
})

describe('model names', () => {
  const router = new ModelRouter(
    loadConfig({ NVIDIA_API_KEY: 'nvapi-test', TOLLGATE_CONFIG: '/c.yaml' }, () => 'aliases:\n  Fast: meta/llama-3.1-8b-instruct\n'),
  )

  it('resolve without regard to case, to one canonical name, and go upstream as configured or as written', () => {
    expect(router.resolve('MiniMaxAI/MiniMax-M2.1')!.model).toMatchObject({
      name: 'minimaxai/minimax-m2.1',
      upstreamModel: 'minimaxai/minimax-m2.1',
      defaults: { max_tokens: 8192 },
    })
    expect(router.resolve('FAST')!.model).toMatchObject({ name: 'meta/llama-3.1-8b-instruct', upstreamModel: 'meta/llama-3.1-8b-instruct' })
    expect(router.resolve('Some/Unlisted-Model')!.model).toMatchObject({
      name: 'some/unlisted-model',
      upstreamModel: 'Some/Unlisted-Model',
    })
  })

  it('label metrics by configured names and the first models that answered; the rest share one label', () => {
    const labels = new ModelRouter(loadConfig({ NVIDIA_API_KEY: 'nvapi-test' }))
    expect(labels.label('minimaxai/minimax-m2.1', false)).toBe('minimaxai/minimax-m2.1')
    expect(labels.label('never/answered', false)).toBe('other')
    for (let i = 0; i < MAX_MODEL_LABELS; i++) expect(labels.label(`made-up/${i}`, true)).toBe(`made-up/${i}`)
    expect(labels.label('made-up/one-too-many', true)).toBe('other')
    expect(labels.label('made-up/0', false)).toBe('made-up/0')
  })
})

describe('retry-after from the upstream', () => {
  const now = Date.parse('2026-12-07T12:00:00Z')
  it.each([
    ['7', 7000],
    ['1.5', 1500],
    ['Mon, 07 Dec 2026 12:00:30 GMT', 30_000],
    ['Mon, 07 Dec 2026 11:00:00 GMT', 0],
    ['nvapi-test-upstream-key-0001', null],
    ['2026', 2_026_000],
    ['12 December', null],
    ['-1', null],
    ['', null],
  ])('%j is %j ms', (header, ms) => {
    expect(retryAfterMs(header, now)).toBe(ms)
  })
})

describe('KeyRefusals', () => {
  it('takes a key out only for a 401, or 403s for two models with no answer between', () => {
    const refusals = new KeyRefusals()
    expect(refusals.refused(0, 'a', 401)).toBe(true)
    expect(refusals.refused(1, 'a', 403)).toBe(false)
    expect(refusals.refused(1, 'a', 403)).toBe(false)
    expect(refusals.refused(1, 'b', 403)).toBe(true)
    expect(refusals.refused(2, 'a', 403)).toBe(false)
    refusals.accepted(2)
    expect(refusals.refused(2, 'b', 403)).toBe(false)
  })
})

describe('scrubbing upstream keys', () => {
  const key = 'nvapi-Made_Up-Key-0123456789abcdefXYZ'
  const pattern = secretPattern([key])
  it.each([
    ['as it is', key],
    ['percent-encoded, every other character', [...key].map((c, i) => (i % 2 ? `%${c.charCodeAt(0).toString(16)}` : c)).join('')],
    ['percent-encoded in capitals', [...key].map((c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).join('')],
    ['in JSON \\u escapes', [...key].map((c) => `\\u00${c.charCodeAt(0).toString(16)}`).join('')],
    ['base64, alone', Buffer.from(key).toString('base64')],
    ['base64, one byte in', Buffer.from(`x${key}`).toString('base64')],
    ['base64url, two bytes in', Buffer.from(`xy${key}`).toString('base64url')],
    ['hex, upper case', Buffer.from(key).toString('hex').toUpperCase()],
  ])('%s', (_label, echo) => {
    const out = scrubSecrets(`upstream said: ${echo} (end)`, pattern)
    expect(out).toContain('[redacted]')
    expect(out).not.toContain(echo)
    expect(out.startsWith('upstream said: ')).toBe(true)
  })
})
