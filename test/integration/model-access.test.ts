import OpenAI from 'openai'
import { describe, expect, it } from 'vitest'
import { main as cli } from '../../src/cli.js'
import { ADMIN_TOKEN, withGateway, type Envelope, type TestGateway, useGatewayOn, useUpstreamAndRedis } from '../helpers/gateway.js'
import { waitFor } from '../helpers/wait.js'

/**
 * allowed_models: which models a team, and a key within it, may use. A model outside the list is a
 * 403 `model_not_allowed` before anything reaches the upstream or a quota; /v1/models lists only
 * what the key may use; a key's list narrows its team's; fallbacks outside the list are skipped.
 * On the embedded store and on Redis.
 */

const MINIMAX = 'minimaxai/minimax-m2.1'
const LLAMA = 'meta/llama-3.1-8b-instruct'
const EMBED = 'nvidia/nv-embedqa-e5-v5'
const CONFIG = `
aliases:
  minimax: ${MINIMAX}
  llama: ${LLAMA}
teams:
  seeded:
    allowed_models: ["meta/*"]
`

const parts = useUpstreamAndRedis()

const client = (gw: TestGateway, key: string) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 })
const ask = (gw: TestGateway, key: string, model: string) =>
  client(gw, key).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] })

/** A team with these allowed models (undefined: the field left out) and a key with its own. */
async function keyOf(gw: TestGateway, team: string, teamModels: unknown, keyModels?: unknown): Promise<string> {
  const created = await gw.admin('POST', '/admin/teams', { id: team, ...(teamModels === undefined ? {} : { allowed_models: teamModels }) })
  expect(created.status).toBe(201)
  const key = await gw.admin('POST', `/admin/teams/${team}/keys`, keyModels === undefined ? {} : { allowed_models: keyModels })
  expect(key.status).toBe(201)
  return ((await key.json()) as { key: string }).key
}

async function usageRows(gw: TestGateway, team: string): Promise<{ requests: number }[]> {
  return ((await (await gw.admin('GET', `/admin/usage?team=${team}`)).json()) as { data: { requests: number }[] }).data
}

for (const store of ['embedded', 'redis'] as const) {
  describe(`allowed_models (${store} store)`, () => {
    const on = useGatewayOn(store, parts, CONFIG)

    it('refuses a model outside the list with a 403 the SDK raises as PermissionDeniedError; nothing goes upstream or is counted', async () => {
      const key = await keyOf(on.gw, `deny-${store}`, ['minimaxai/*'])
      const before = parts.upstream.requests.length
      const err = await ask(on.gw, key, LLAMA).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError)
      expect((err as InstanceType<typeof OpenAI.PermissionDeniedError>).status).toBe(403)
      expect((err as InstanceType<typeof OpenAI.PermissionDeniedError>).error).toEqual({
        message: expect.stringContaining(`'${LLAMA}'`),
        type: 'permission_error',
        param: 'model',
        code: 'model_not_allowed',
      })
      expect(parts.upstream.requests.length).toBe(before)
      // The allowed model answers, matched without regard to case; only it is counted.
      expect((await ask(on.gw, key, 'MiniMaxAI/MiniMax-M2.1')).model).toBe(MINIMAX)
      await waitFor(async () => (await usageRows(on.gw, `deny-${store}`))[0]?.requests === 1, 'one request counted')
      expect(await usageRows(on.gw, `deny-${store}`)).toHaveLength(1)
    })

    it('lists in /v1/models only what the key may use, aliases by the model they stand for', async () => {
      const key = await keyOf(on.gw, `list-${store}`, ['minimaxai/*', EMBED])
      const ids = (await client(on.gw, key).models.list()).data.map((m) => m.id).sort()
      expect(ids).toEqual(['minimax', MINIMAX, EMBED].sort())
      const res = await fetch(`${on.gw.url}/v1/models/${LLAMA}`, { headers: { authorization: `Bearer ${key}` } })
      expect(res.status).toBe(404)
      // A key without any list sees every model.
      const open = await keyOf(on.gw, `open-${store}`, undefined)
      expect((await client(on.gw, open).models.list()).data.map((m) => m.id)).toEqual(expect.arrayContaining([MINIMAX, LLAMA, EMBED]))
    })

    it("narrows the team's list by the key's: a model must pass both", async () => {
      const narrow = await keyOf(on.gw, `narrow-${store}`, ['minimaxai/*', 'meta/*'], [LLAMA])
      expect((await ask(on.gw, narrow, LLAMA)).model).toBe(LLAMA)
      expect(await ask(on.gw, narrow, MINIMAX).catch((e: unknown) => (e as { status: number }).status)).toBe(403)
      // A key cannot widen its team's list.
      const wide = await keyOf(on.gw, `wide-${store}`, ['meta/*'], ['**'])
      expect(await ask(on.gw, wide, MINIMAX).catch((e: unknown) => (e as { status: number }).status)).toBe(403)
      expect((await client(on.gw, wide).models.list()).data.map((m) => m.id).sort()).toEqual(['llama', LLAMA].sort())
    })

    it('passes an alias by its own name or by the model it stands for; an empty list allows nothing', async () => {
      const byTarget = await keyOf(on.gw, `alias-target-${store}`, [MINIMAX])
      expect((await ask(on.gw, byTarget, 'minimax')).model).toBe(MINIMAX)
      const byAlias = await keyOf(on.gw, `alias-name-${store}`, ['llama'])
      expect((await ask(on.gw, byAlias, 'llama')).model).toBe(LLAMA)
      expect(await ask(on.gw, byAlias, LLAMA).catch((e: unknown) => (e as { status: number }).status)).toBe(403)
      const none = await keyOf(on.gw, `none-${store}`, [])
      expect(await ask(on.gw, none, MINIMAX).catch((e: unknown) => (e as { status: number }).status)).toBe(403)
      expect((await client(on.gw, none).models.list()).data).toEqual([])
    })

    it('changes at once when an admin patches the team or the key, and null allows every model again', async () => {
      const team = `patch-${store}`
      const key = await keyOf(on.gw, team, [MINIMAX])
      expect(await ask(on.gw, key, LLAMA).catch((e: unknown) => (e as { status: number }).status)).toBe(403)
      const patched = await on.gw.admin('PATCH', `/admin/teams/${team}`, { allowed_models: null })
      expect(await patched.json()).toMatchObject({ allowed_models: null })
      expect((await ask(on.gw, key, LLAMA)).model).toBe(LLAMA)
      const keys = (await (await on.gw.admin('GET', `/admin/teams/${team}/keys`)).json()) as { data: { id: string }[] }
      const keyPatch = await on.gw.admin('PATCH', `/admin/keys/${keys.data[0]!.id}`, { allowed_models: ['minimaxai/*'] })
      expect(await keyPatch.json()).toMatchObject({ allowed_models: ['minimaxai/*'] })
      expect(await ask(on.gw, key, LLAMA).catch((e: unknown) => (e as { status: number }).status)).toBe(403)
      // A rotated key keeps its list.
      const rotated = await on.gw.admin('POST', `/admin/keys/${keys.data[0]!.id}/rotate`, {})
      expect(await rotated.json()).toMatchObject({ allowed_models: ['minimaxai/*'] })
    })

    it('takes a team list from the config file', async () => {
      const res = await on.gw.admin('GET', '/admin/teams/seeded')
      expect(await res.json()).toMatchObject({ allowed_models: ['meta/*'] })
      const key = ((await (await on.gw.admin('POST', '/admin/teams/seeded/keys', {})).json()) as { key: string }).key
      expect((await ask(on.gw, key, LLAMA)).model).toBe(LLAMA)
      expect(await ask(on.gw, key, MINIMAX).catch((e: unknown) => (e as { status: number }).status)).toBe(403)
    })

    it('refuses a malformed list with a 400 naming the field, and stores nothing', async () => {
      const cases: [unknown, string][] = [
        ['minimaxai/*', 'allowed_models'],
        [['ok/*', ''], 'allowed_models[1]'],
        [['with space'], 'allowed_models[0]'],
        [['a//b'], 'allowed_models[0]'],
        [['{a,b}'], 'allowed_models[0]'],
        [[42], 'allowed_models[0]'],
      ]
      for (const [allowed_models, param] of cases) {
        const team = `bad-${store}-${cases.findIndex((c) => c[0] === allowed_models)}`
        const res = await on.gw.admin('POST', '/admin/teams', { id: team, allowed_models })
        expect(res.status).toBe(400)
        expect(((await res.json()) as Envelope).error).toMatchObject({ type: 'invalid_request_error', param, code: 'invalid_value' })
        expect((await on.gw.admin('GET', `/admin/teams/${team}`)).status).toBe(404)
      }
      await keyOf(on.gw, `bad-key-${store}`, undefined)
      const keys = (await (await on.gw.admin('GET', `/admin/teams/bad-key-${store}/keys`)).json()) as { data: { id: string }[] }
      const res = await on.gw.admin('PATCH', `/admin/keys/${keys.data[0]!.id}`, { allowed_models: ['bad model'] })
      expect(res.status).toBe(400)
      expect(((await res.json()) as Envelope).error.param).toBe('allowed_models[0]')
      expect(await (await on.gw.admin('GET', `/admin/keys/${keys.data[0]!.id}`)).json()).toMatchObject({ allowed_models: null })
    })
  })
}

describe('allowed_models and fallbacks', () => {
  it('skips a fallback the caller may not use', async () => {
    const yaml = `upstreams:\n  nvidia:\n    base_url: ${parts.upstream.baseUrl}\n    retries: 0\nmodels:\n  ${MINIMAX}:\n    fallbacks: [${LLAMA}]\n`
    await withGateway({ upstream: parts.upstream, env: { TOLLGATE_CONFIG: '/c.yaml' }, files: { '/c.yaml': yaml } }, async (gw) => {
      const fail = {
        kind: 'error' as const,
        status: 500,
        body: '{"message":"Internal server error","type":"internal_server_error","code":500}',
      }
      const allowed = await keyOf(gw, 'fallback-open', undefined)
      parts.upstream.enqueue(fail)
      let before = parts.upstream.requests.length
      expect((await ask(gw, allowed, MINIMAX)).model).toBe(LLAMA)
      expect(parts.upstream.requests.slice(before).map((r) => r.body?.model)).toEqual([MINIMAX, LLAMA])

      const only = await keyOf(gw, 'fallback-closed', [MINIMAX])
      parts.upstream.enqueue(fail)
      before = parts.upstream.requests.length
      const status = await ask(gw, only, MINIMAX).then(
        () => 200,
        (e: unknown) => (e as { status: number }).status,
      )
      expect(status).toBe(500)
      expect(parts.upstream.requests.slice(before).map((r) => r.body?.model)).toEqual([MINIMAX])
    })
  })
})

describe('allowed_models from the CLI', () => {
  it('sets, narrows and clears a list with --allowed-models and --all-models', async () => {
    await withGateway({ upstream: parts.upstream }, async (gw) => {
      const run = async (...argv: string[]) => {
        const io = { out: '', err: '', stdout: (t: string) => void (io.out += t), stderr: (t: string) => void (io.err += t) }
        const code = await cli(argv, { TOLLGATE_URL: gw.url, ADMIN_TOKEN }, io)
        return { code, json: io.out ? (JSON.parse(io.out) as Record<string, unknown>) : null, err: io.err }
      }
      expect((await run('teams', 'create', 'cli', '--allowed-models', 'minimaxai/*, meta/*')).json).toMatchObject({
        allowed_models: ['minimaxai/*', 'meta/*'],
      })
      const key = (await run('keys', 'create', '--team', 'cli', '--allowed-models', LLAMA)).json as { id: string; key: string }
      expect(key).toMatchObject({ allowed_models: [LLAMA] })
      expect(await ask(gw, key.key, MINIMAX).catch((e: unknown) => (e as { status: number }).status)).toBe(403)
      expect((await run('keys', 'update', key.id, '--all-models')).json).toMatchObject({ allowed_models: null })
      expect((await ask(gw, key.key, MINIMAX)).model).toBe(MINIMAX)
      expect((await run('teams', 'update', 'cli', '--all-models')).json).toMatchObject({ allowed_models: null })
      // A pattern the API refuses: exit 1 with its 400; both flags at once: a usage error.
      const bad = await run('teams', 'update', 'cli', '--allowed-models', 'a b')
      expect(bad.code).toBe(1)
      expect(bad.err).toContain('allowed_models[0]')
      expect((await run('teams', 'update', 'cli', '--allowed-models', 'x', '--all-models')).code).toBe(2)
    })
  })
})
