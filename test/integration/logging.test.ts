import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { ADMIN_TOKEN, startGateway, type TestGateway } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/** Neither the NVIDIA key nor a client key ever appears in a log line or a response. */

const NVIDIA_KEY = 'nvapi-secret-upstream-key-9f8e7d6c5b4a'

let upstream: FakeUpstream
let gw: TestGateway
const responses: string[] = []

beforeAll(async () => {
  upstream = await new FakeUpstream([NVIDIA_KEY]).start()
  gw = await startGateway({ upstream, env: { LOG_LEVEL: 'trace' } })
})
afterAll(async () => {
  await gw.close()
  await upstream.close()
})

async function record(res: Response): Promise<Response> {
  responses.push(`${res.status} ${JSON.stringify([...res.headers])} ${await res.clone().text()}`)
  return res
}

describe('secrets', () => {
  it('stay out of logs and responses through a whole session of use and abuse', async () => {
    const created = await record(await gw.admin('POST', '/admin/teams', { id: 'ml' }))
    expect(created.status).toBe(201)
    const keyRes = await gw.admin('POST', '/admin/teams/ml/keys', {})
    const { key, id } = (await keyRes.json()) as { key: string; id: string }
    const client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 })

    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' }
    const body = JSON.stringify({ model: 'minimaxai/minimax-m2.1', messages: [{ role: 'user', content: 'hi' }] })
    await record(await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body }))
    await record(await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body: body.replace('}]', '}],"stream":true') }))
    await record(await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body: '{bad json' }))
    upstream.enqueue({ kind: 'error', status: 403, body: `{"status":403,"title":"Forbidden","detail":"key ${NVIDIA_KEY} is not allowed"}` })
    const refused = await record(await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body }))
    expect(refused.status).toBe(502)
    await record(await fetch(`${gw.url}/v1/models`, { headers }))
    await record(
      await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${key}x` }, body }),
    )
    await record(await fetch(`${gw.url}/admin/teams`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}x` } }))
    await record(await gw.admin('GET', '/admin/teams/ml/keys'))
    await client.chat.completions.create({ model: 'minimaxai/minimax-m2.1', messages: [{ role: 'user', content: 'hi' }] })
    await record(await gw.admin('DELETE', `/admin/keys/${id}`))

    await waitFor(() => gw.logLines().filter((l) => l.msg === 'request').length >= 12, 'all request log lines')
    const everything = gw.logs.join('\n') + responses.join('\n')
    for (const secret of [NVIDIA_KEY, key, ADMIN_TOKEN, 'nvapi-secret']) expect(everything).not.toContain(secret)
  })
})

describe('the request log line', () => {
  it('is one line per request with id, team, key id, model, endpoint, stream, status, upstream status and duration', async () => {
    const { key, id } = await gw.createKey('logs')
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': 'log-line-test' },
      body: JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    })
    await res.text()
    await waitFor(() => gw.logLines().some((l) => l.reqId === 'log-line-test' && l.msg === 'request'), 'the log line')
    const lines = gw.logLines().filter((l) => l.reqId === 'log-line-test')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({
      level: 30,
      msg: 'request',
      team: 'logs',
      key_id: id,
      model: 'meta/llama-3.1-8b-instruct',
      endpoint: 'chat',
      stream: true,
      status: 200,
      upstream_status: 200,
      aborted: false,
    })
    expect(typeof lines[0]!.duration_ms).toBe('number')
  })
})

describe('lines logged while a request runs', () => {
  it('carry the request id, like the request line, and nothing is logged twice', async () => {
    const { key } = await gw.createKey('logs-error')
    upstream.enqueue({ kind: 'error', status: 401, body: '{"status":401,"title":"Unauthorized","detail":"Authentication failed"}' })
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': 'log-error-test' },
      body: JSON.stringify({ model: 'meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(502)
    await waitFor(() => gw.logLines().some((l) => l.reqId === 'log-error-test' && l.msg === 'request'), 'the request line')
    const lines = gw.logLines().filter((l) => l.reqId === 'log-error-test')
    // (The refused key leaves the rotation: this test runs last in the file.)
    expect(lines.map((l) => [l.level, String(l.msg).replace(/key \w+:/, 'key …:')])).toEqual([
      [50, "upstream 'nvidia' refused key …: taken out of rotation"],
      [50, "upstream 'nvidia' refused the gateway's API key: check its keys"],
      [30, 'request'],
    ])
    expect(lines[1]).toMatchObject({ service: 'tollgate', upstream: 'nvidia', upstream_status: 401 })
    expect(lines[2]).toMatchObject({ service: 'tollgate', status: 502, upstream_status: 401, team: 'logs-error' })
  })
})
