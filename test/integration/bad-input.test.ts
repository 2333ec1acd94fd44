import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { startGateway, type TestGateway, withGateway, type Envelope } from '../helpers/gateway.js'
import { rawRequest } from '../helpers/http.js'

let upstream: FakeUpstream
let gw: TestGateway
let key: string

beforeAll(async () => {
  upstream = await new FakeUpstream().start()
  gw = await startGateway({ upstream, env: { BODY_LIMIT_BYTES: String(64 * 1024) } })
  key = (await gw.createKey()).key
})
afterAll(async () => {
  await gw.close()
  await upstream.close()
})

async function send(path: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await rawRequest(
    gw.url + path,
    'POST',
    { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body,
  )
  return { status: res.status, headers: res.headers, data: JSON.parse(res.body.toString('utf8')) as Envelope }
}

function expectEnvelope(data: Envelope) {
  expect(Object.keys(data.error).sort()).toEqual(['code', 'message', 'param', 'type'])
  expect(data.error.message.length).toBeGreaterThan(10)
}

/** A valid chat body with more fields (`"name":value,…`) after its model and messages. */
const withChat = (fields: string) => `{"model":"meta/llama-3.1-8b-instruct","messages":[{"role":"user","content":"hi"}],${fields}}`

describe('bad bodies are refused before anything goes upstream', () => {
  it.each([
    ['malformed JSON', '{"model": "x", "messages": [', 400, 'invalid_json', null],
    ['an empty body', '', 400, 'invalid_json', null],
    ['a JSON array', '[]', 400, 'invalid_json', null],
    ['a JSON string', '"hello"', 400, 'invalid_json', null],
    ['no model', '{"messages":[{"role":"user","content":"hi"}]}', 400, 'missing_required_parameter', 'model'],
    ['a numeric model', '{"model":42,"messages":[{"role":"user","content":"hi"}]}', 400, 'missing_required_parameter', 'model'],
    ['no messages', '{"model":"meta/llama-3.1-8b-instruct"}', 400, 'missing_required_parameter', 'messages'],
    ['messages not an array', '{"model":"meta/llama-3.1-8b-instruct","messages":"hi"}', 400, 'invalid_type', 'messages'],
    ['empty messages', '{"model":"meta/llama-3.1-8b-instruct","messages":[]}', 400, 'invalid_type', 'messages'],
    ['stream not a boolean', withChat('"stream":"yes"'), 400, 'invalid_type', 'stream'],
    ['stream_options without stream', withChat('"stream_options":{"include_usage":true}'), 400, 'invalid_value', 'stream_options'],
    ['a __proto__ key', '{"__proto__":{"x":1},"model":"m","messages":[{"role":"user","content":"hi"}]}', 400, 'invalid_json', null],
    [
      'a __proto__ key written with escapes',
      '{"\\u005f_proto__":{"x":1},"model":"m","messages":[{"role":"user","content":"hi"}]}',
      400,
      'invalid_json',
      null,
    ],
    ['max_tokens as a string', withChat('"max_tokens":"100"'), 400, 'invalid_type', 'max_tokens'],
    ['max_tokens a fraction', withChat('"max_tokens":1.5'), 400, 'invalid_type', 'max_tokens'],
    ['max_tokens 0', withChat('"max_tokens":0'), 400, 'integer_below_min_value', 'max_tokens'],
    ['max_tokens 1e300', withChat('"max_tokens":1e300'), 400, 'integer_above_max_value', 'max_tokens'],
    ['max_completion_tokens negative', withChat('"max_completion_tokens":-1'), 400, 'integer_below_min_value', 'max_completion_tokens'],
    ['n above 128', withChat('"n":129'), 400, 'integer_above_max_value', 'n'],
    [
      'a constructor.prototype key',
      '{"constructor":{"prototype":{"x":1}},"model":"m","messages":[{"role":"user","content":"hi"}]}',
      400,
      'invalid_json',
      null,
    ],
  ])('%s is refused', async (_label, body, status, code, param) => {
    const before = upstream.requests.length
    const { status: got, data } = await send('/v1/chat/completions', body)
    expect(got).toBe(status)
    expectEnvelope(data)
    expect(data.error.type).toBe('invalid_request_error')
    expect(data.error.code).toBe(code)
    expect(data.error.param).toBe(param)
    expect(upstream.requests.length).toBe(before)
  })

  it('says where a body stops being JSON, whatever its content type, and names a forbidden key as the reason', async () => {
    const broken = await send('/v1/chat/completions', '{"model": "x" "messages": []}')
    expect(broken.data.error.message).toMatch(/^We could not parse the JSON body of your request: .*position 14/)
    // A form-encoded body (curl -d) is read as JSON too: no word of a content type it did not send.
    const form = await send('/v1/chat/completions', '{"model": "x",}', { 'content-type': 'application/x-www-form-urlencoded' })
    expect(form.status).toBe(400)
    expect(form.data.error.message).toMatch(/position 14/)
    expect(form.data.error.message).not.toMatch(/content-type/i)
    // Valid JSON refused for what it holds: the message says so rather than "not valid JSON".
    const poisoned = await send('/v1/chat/completions', '{"__proto__":{"x":1},"model":"m","messages":[{"role":"user","content":"hi"}]}')
    expect(poisoned.data.error.message).toContain("'__proto__'")
    expect(poisoned.data.error.message).not.toMatch(/not valid JSON/)
  })

  it('says what is wrong with a count, on completions too, and lets null and good counts through', async () => {
    const huge = await send('/v1/chat/completions', withChat('"max_tokens":1e400'))
    expect(huge.data.error.message).toBe(
      "Invalid 'max_tokens': integer above maximum value. Expected a value <= 2147483647, but got Infinity instead.",
    )
    const list = await send('/v1/completions', '{"model":"meta/llama-3.1-8b-instruct","prompt":"hi","n":[2]}')
    expect(list.status).toBe(400)
    expect(list.data.error.message).toBe("Invalid type for 'n': expected an integer, but got an array instead.")
    const before = upstream.requests.length
    for (const counts of ['"max_tokens":null', '"max_tokens":2147483647,"n":1']) {
      const ok = await send('/v1/chat/completions', withChat(counts))
      expect(ok.status).toBe(200)
    }
    // A legacy completion may ask for no tokens at all (with echo, to score its prompt); not below.
    expect((await send('/v1/completions', '{"model":"meta/llama-3.1-8b-instruct","prompt":"hi","max_tokens":0}')).status).toBe(200)
    const below = await send('/v1/completions', '{"model":"meta/llama-3.1-8b-instruct","prompt":"hi","max_tokens":-1}')
    expect(below.data.error).toMatchObject({
      code: 'integer_below_min_value',
      param: 'max_tokens',
      message: expect.stringContaining('>= 0'),
    })
    expect(upstream.requests.length).toBe(before + 3)
  })

  it('checks the input field of completions and embeddings', async () => {
    expect((await send('/v1/completions', '{"model":"m"}')).data.error.param).toBe('prompt')
    expect((await send('/v1/embeddings', '{"model":"m","input":""}')).data.error.param).toBe('input')
  })

  it('a body over the limit is a 413', async () => {
    const big = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(70 * 1024) }] })
    const { status, data } = await send('/v1/chat/completions', big)
    expect(status).toBe(413)
    expectEnvelope(data)
    expect(data.error.code).toBe('request_too_large')
  })

  it('reads a body sent as form-encoded (curl -d without a content type) as JSON', async () => {
    const res = await rawRequest(
      gw.url + '/v1/chat/completions',
      'POST',
      { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' },
      JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }),
    )
    expect(res.status).toBe(200)
  })

  it('passes on a prompt that only mentions the words a poisoned body uses, and \\u escapes, decoded', async () => {
    const body =
      '{"model":"meta/llama-3.1-8b-instruct","messages":[{"role":"user","content":"the constructor of __proto__ in caf\\u00e9"}]}'
    const res = await rawRequest(
      gw.url + '/v1/chat/completions',
      'POST',
      { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body,
    )
    expect(res.status).toBe(200)
    const sent = upstream.requests.at(-1)!.body as { messages: { content: string }[] }
    expect(sent.messages[0]!.content).toBe('the constructor of __proto__ in café')
  })

  it('a model that is not served is a 404 when nothing routes unknown models', async () => {
    const config = 'default_upstream: null\nmodels:\n  meta/llama-3.1-8b-instruct:\n    upstream: nvidia\n'
    await withGateway({ upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': config } }, async (other) => {
      const otherKey = (await other.createKey()).key
      const before = upstream.requests.length
      const res = await fetch(other.url + '/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${otherKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'no/such-model', messages: [{ role: 'user', content: 'hi' }] }),
      })
      expect(res.status).toBe(404)
      expect(((await res.json()) as Envelope).error).toMatchObject({ code: 'model_not_found', param: 'model' })
      expect(upstream.requests.length).toBe(before)
    })
  })
})

describe('client authentication', () => {
  const body = JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] })

  it.each([
    ['no Authorization header', {}],
    ['a non-bearer scheme', { authorization: 'Basic dTpw' }],
    ['a key of the wrong shape', { authorization: 'Bearer sk-123' }],
    ['an unknown key of the right shape', { authorization: `Bearer tg-${'A'.repeat(43)}` }],
  ])('%s → 401 invalid_api_key', async (_label, headers) => {
    const before = upstream.requests.length
    const res = await rawRequest(gw.url + '/v1/chat/completions', 'POST', { 'content-type': 'application/json', ...headers }, body)
    expect(res.status).toBe(401)
    const data = JSON.parse(res.body.toString()) as Envelope
    expectEnvelope(data)
    expect(data.error.code).toBe('invalid_api_key')
    expect(upstream.requests.length).toBe(before)
  })

  it('a revoked key fails at once', async () => {
    const created = await gw.createKey('revokers')
    const ok = await rawRequest(gw.url + '/v1/chat/completions', 'POST', { authorization: `Bearer ${created.key}` }, body)
    expect(ok.status).toBe(200)
    expect((await gw.admin('DELETE', `/admin/keys/${created.id}`)).status).toBe(204)
    const refused = await rawRequest(gw.url + '/v1/chat/completions', 'POST', { authorization: `Bearer ${created.key}` }, body)
    expect(refused.status).toBe(401)
  })

  it('also guards /v1/models', async () => {
    expect((await fetch(gw.url + '/v1/models')).status).toBe(401)
  })
})

describe('failed authentications', () => {
  it('are limited per client IP: past the limit a key not yet in use waits, even a correct one; keys in use go on', async () => {
    await withGateway(
      { upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': 'quotas:\n  auth_failures_per_minute: 3\n' } },
      async (other) => {
        const good = (await other.createKey()).key
        const body = JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] })
        const bad = { authorization: `Bearer tg-${'B'.repeat(43)}` }
        // Successes do not count.
        for (let i = 0; i < 5; i++)
          expect((await rawRequest(other.url + '/v1/chat/completions', 'POST', { authorization: `Bearer ${good}` }, body)).status).toBe(200)
        const statuses = []
        for (let i = 0; i < 5; i++) statuses.push((await rawRequest(other.url + '/v1/chat/completions', 'POST', bad, body)).status)
        expect(statuses).toEqual([401, 401, 401, 429, 429])
        // A correct key this instance has not seen gets nothing past the limit, so guessing gains nothing.
        const fresh = (await other.createKey('other-team')).key
        const blocked = await rawRequest(other.url + '/v1/chat/completions', 'POST', { authorization: `Bearer ${fresh}` }, body)
        expect(blocked.status).toBe(429)
        // A key already in use from this address is not what is being guessed: it goes on.
        expect((await rawRequest(other.url + '/v1/chat/completions', 'POST', { authorization: `Bearer ${good}` }, body)).status).toBe(200)
        expect(JSON.parse(blocked.body.toString()).error.code).toBe('auth_rate_limited')
        expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0)
      },
    )
  })
})

describe('routes', () => {
  it('unknown routes are a 404 in JSON', async () => {
    const res = await fetch(gw.url + '/v2/whatever')
    expect(res.status).toBe(404)
    expect(((await res.json()) as Envelope).error.code).toBe('unknown_route')
  })

  it('health and readiness answer', async () => {
    expect(await (await fetch(gw.url + '/healthz')).json()).toEqual({ status: 'ok' })
    expect(await (await fetch(gw.url + '/readyz')).json()).toEqual({ status: 'ready', store: 'memory' })
  })
})
