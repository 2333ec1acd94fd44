import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { describeUpstreamBody, mapTransportError, normaliseUpstreamError } from '../../src/upstream/errors.js'
import { applyDefaults, ModelRouter } from '../../src/upstream/router.js'

describe('describeUpstreamBody reads every NVIDIA error shape', () => {
  it.each([
    ['{"status":403,"title":"Forbidden","detail":"Authorization failed"}', { message: 'Forbidden: Authorization failed' }],
    ['{"status":429,"title":"Too Many Requests"}', { message: 'Too Many Requests' }],
    ['{"error":"body -> x\\n  Extra inputs are not permitted (type=extra_forbidden)"}', { message: 'body -> x\n  Extra inputs are not permitted (type=extra_forbidden)' }],
    ['{"message":"Internal server error","type":"internal_server_error","code":500}', { message: 'Internal server error', type: 'internal_server_error' }],
    ['{"error":{"message":"ResourceExhausted","type":"Service Unavailable","code":503}}', { message: 'ResourceExhausted', type: 'Service Unavailable' }],
    ['{"error":{"message":"bad","type":"invalid_request_error","param":"messages","code":"invalid_value"}}', { message: 'bad', type: 'invalid_request_error', param: 'messages', code: 'invalid_value' }],
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
    const n = normaliseUpstreamError('nvidia', 400, '{"error":{"message":"bad SECRET","type":"x","param":"messages","code":"invalid_value"}}', scrub)
    expect(n).toEqual({
      status: 400,
      credentialsRefused: false,
      body: { error: { message: "Upstream 'nvidia' answered 400: bad [redacted]", type: 'invalid_request_error', param: 'messages', code: 'invalid_value' } },
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
      model: 'minimaxai/minimax-m2.1', messages: [], temperature: 0, top_p: 0.95, max_tokens: 8192,
    })
    expect(applyDefaults({ model: 'm2', messages: [], max_completion_tokens: 5 }, resolved, true)).not.toHaveProperty('max_tokens')
    expect(applyDefaults({ model: 'm2', input: 'x' }, resolved, false)).toEqual({ model: 'minimaxai/minimax-m2.1', input: 'x' })
  })

  it('answers null for unknown models when nothing routes them', () => {
    const strict = new ModelRouter(loadConfig({ TOLLGATE_CONFIG: '/c' }, () => 'default_upstream: null\n'))
    expect(strict.resolve('x/y')).toBeNull()
  })
})
