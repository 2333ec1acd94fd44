import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { GatewayError } from '../../src/errors.js'
import { checkBody } from '../../src/proxy/check.js'
import { ENDPOINTS } from '../../src/proxy/endpoints.js'
import type { ProxyOptions } from '../../src/proxy/flight.js'
import { resolveModel } from '../../src/proxy/resolve.js'
import type { Principal } from '../../src/store/types.js'
import { UpstreamClient } from '../../src/upstream/client.js'
import { ModelRouter } from '../../src/upstream/router.js'

/** The proxy's first steps, each driven alone: what they take, what they give, what they refuse. */

const chat = ENDPOINTS.find((e) => e.name === 'chat')!
const refusal = (f: () => unknown) => {
  try {
    f()
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    const e = err as GatewayError
    return { status: e.statusCode, param: e.param, code: e.code }
  }
  throw new Error('not refused')
}

describe('check: the body', () => {
  it('gives the body back when it is a request', () => {
    const body = { model: 'minimaxai/minimax-m2.1', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10, stream: true }
    expect(checkBody(chat, body)).toBe(body)
  })

  it.each([
    ['not an object', [], { status: 400, param: null, code: 'invalid_json' }],
    ['no model', { messages: [] }, { status: 400, param: 'model', code: 'missing_required_parameter' }],
    ['a model with a space', { model: 'a/b ', messages: [{}] }, { status: 400, param: 'model', code: 'invalid_model' }],
    ['no messages', { model: 'a/b' }, { status: 400, param: 'messages', code: 'missing_required_parameter' }],
    ['a fractional n', { model: 'a/b', messages: [{}], n: 1.5 }, { status: 400, param: 'n', code: 'invalid_type' }],
  ])('refuses %s', (_label, body, expected) => {
    expect(refusal(() => checkBody(chat, body))).toEqual(expected)
  })
})

describe('resolve: the model', () => {
  const config = loadConfig({ NVIDIA_API_KEY: 'nvapi-made-up-key-for-resolve' })
  const opts = {
    router: new ModelRouter(config),
    upstreams: new Map([['nvidia', new UpstreamClient(config.upstreams.nvidia!)]]),
  } as unknown as ProxyOptions

  const everything = { team: { allowed_models: null }, key: { allowed_models: null } } as unknown as Principal
  const only = (team: string[] | null, key: string[] | null) =>
    ({ team: { allowed_models: team }, key: { allowed_models: key } }) as unknown as Principal

  it('gives the canonical model and its upstream', () => {
    expect(resolveModel(opts, 'MiniMaxAI/MiniMax-M2.1', everything)).toMatchObject({
      model: { name: 'minimaxai/minimax-m2.1' },
      upstream: { name: 'nvidia' },
    })
  })

  it('refuses a model of an upstream without a key: 503, upstream_not_configured', () => {
    const bare = loadConfig({})
    const without = {
      router: new ModelRouter(bare),
      upstreams: new Map([['nvidia', new UpstreamClient(bare.upstreams.nvidia!)]]),
    } as unknown as ProxyOptions
    expect(refusal(() => resolveModel(without, 'minimaxai/minimax-m2.1', everything))).toEqual({
      status: 503,
      param: null,
      code: 'upstream_not_configured',
    })
  })

  it("refuses a model outside the team's or the key's allowed_models: 403, model_not_allowed, naming the model", () => {
    const notAllowed = { status: 403, param: 'model', code: 'model_not_allowed' }
    expect(refusal(() => resolveModel(opts, 'meta/llama-3.1-8b-instruct', only(['minimaxai/*'], null)))).toEqual(notAllowed)
    expect(refusal(() => resolveModel(opts, 'minimaxai/minimax-m2.1', only(['minimaxai/*'], ['meta/*'])))).toEqual(notAllowed)
    expect(refusal(() => resolveModel(opts, 'minimaxai/minimax-m2.1', only([], null)))).toEqual(notAllowed)
    expect(resolveModel(opts, 'MiniMaxAI/MiniMax-M2.1', only(['minimaxai/*'], ['*/minimax-m2.1'])).model.name).toBe(
      'minimaxai/minimax-m2.1',
    )
  })
})
