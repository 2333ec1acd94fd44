import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { type TestGateway, withGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/redis.js'

let upstream: FakeUpstream

beforeAll(async () => {
  upstream = await new FakeUpstream().start()
})
afterAll(async () => {
  await upstream.close()
})

async function listModels(gw: TestGateway, key: string) {
  const res = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })
  expect(res.status).toBe(200)
  return (await res.json()) as { object: string; data: { id: string; object: string; owned_by: string; root?: string }[] }
}

const modelListCalls = () => upstream.requests.filter((r) => r.method === 'GET' && r.path === '/v1/models').length

describe('GET /v1/models', () => {
  it("merges the upstream's list with configured models and aliases, and caches it", async () => {
    await withGateway(
      { upstream, env: { TOLLGATE_CONFIG: '/c' }, files: { '/c': 'aliases:\n  fast: meta/llama-3.1-8b-instruct\n' } },
      async (gw) => {
        const { key } = await gw.createKey()
        const before = modelListCalls()
        const list = await listModels(gw, key)
        expect(list.object).toBe('list')
        const ids = list.data.map((m) => m.id)
        expect(ids).toEqual(
          expect.arrayContaining(['minimaxai/minimax-m2.1', 'meta/llama-3.1-8b-instruct', 'nvidia/nv-embedqa-e5-v5', 'fast']),
        )
        expect(list.data.find((m) => m.id === 'fast')).toMatchObject({ object: 'model', root: 'meta/llama-3.1-8b-instruct' })
        await Promise.all([listModels(gw, key), listModels(gw, key)])
        expect(modelListCalls() - before).toBe(1)
      },
    )
  })

  it('still answers with the configured models when the upstream list cannot be had', async () => {
    const port = await freePort()
    await withGateway({ env: { NVIDIA_BASE_URL: `http://127.0.0.1:${port}/v1`, NVIDIA_API_KEY: 'nvapi-x' } }, async (gw) => {
      const { key } = await gw.createKey()
      expect((await listModels(gw, key)).data.map((m) => m.id)).toEqual(['minimaxai/minimax-m2.1'])
      expect(gw.logLines().some((l) => l.level === 40 && String(l.msg).includes('could not list upstream models'))).toBe(true)
    })
  })

  it('lists only configured models when unknown names do not route anywhere', async () => {
    const yaml = `default_upstream: null\nmodels:\n  mine:\n    upstream: nvidia\n    upstream_model: meta/llama-3.1-8b-instruct\naliases:\n  m: mine\n`
    await withGateway({ upstream, env: { TOLLGATE_CONFIG: '/c' }, files: { '/c': yaml } }, async (gw) => {
      const { key } = await gw.createKey()
      const before = modelListCalls()
      expect((await listModels(gw, key)).data.map((m) => m.id)).toEqual(['mine', 'm'])
      expect(modelListCalls()).toBe(before)
      const missing = await fetch(`${gw.url}/v1/models/nope`, { headers: { authorization: `Bearer ${key}` } })
      expect(missing.status).toBe(404)
    })
  })
})
