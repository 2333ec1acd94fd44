import { spawn } from 'node:child_process'
import { once } from 'node:events'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main as cli, type CliIO } from '../../src/cli.js'
import { FakeUpstream, STREAM_TEXT } from '../helpers/fake-upstream.js'
import { freePort } from '../helpers/redis.js'
import { startServer } from '../helpers/process.js'
import { waitFor } from '../helpers/wait.js'

/** The entry file as a real process: configuration errors, start-up, the CLI, and SIGTERM. */

const ADMIN = 'server-test-admin-token-000000000'

function capture(): CliIO & { out: string; err: string } {
  const io = { out: '', err: '', stdout: (t: string) => void (io.out += t), stderr: (t: string) => void (io.err += t) }
  return io
}

describe('a bad configuration', () => {
  it('stops the process with exit 1, naming every problem', async () => {
    const { child, output } = startServer({ PORT: 'x', LOG_LEVEL: 'chatty', TOLLGATE_CONFIG: '/nonexistent/tollgate.yaml' })
    const [code] = await once(child, 'exit')
    expect(code).toBe(1)
    expect(output()).toContain('PORT: must be a whole number')
    expect(output()).toContain('LOG_LEVEL: must be one of')
    expect(output()).toContain('cannot read /nonexistent/tollgate.yaml')
  })
})

describe('a running gateway', () => {
  let upstream: FakeUpstream
  let server: ReturnType<typeof startServer>
  let url: string

  beforeAll(async () => {
    upstream = await new FakeUpstream().start()
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    server = startServer({
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_TOKEN: ADMIN,
      NVIDIA_BASE_URL: upstream.baseUrl,
      NVIDIA_API_KEY: upstream.apiKeys[0]!,
    })
    await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => null))?.status === 200, 'the gateway to start', 20_000)
  })
  afterAll(async () => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL')
    await upstream.close()
  })

  it('takes a newcomer from the CLI to a streamed completion', async () => {
    const env = { TOLLGATE_URL: url, ADMIN_TOKEN: ADMIN }
    const team = capture()
    expect(await cli(['teams', 'create', 'ml', '--name', 'Machine learning', '--limits', '{"requests_per_minute":100}'], env, team)).toBe(0)
    expect(JSON.parse(team.out)).toMatchObject({ id: 'ml', name: 'Machine learning', limits: { requests_per_minute: 100 } })

    const created = capture()
    expect(await cli(['keys', 'create', '--team', 'ml', '--name', 'laptop'], env, created)).toBe(0)
    const { key, id } = JSON.parse(created.out) as { key: string; id: string }
    expect(created.err).toContain('Store this key now')

    const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 })
    const stream = await client.chat.completions.create({
      model: 'minimaxai/minimax-m2.1',
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
    })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? ''
    expect(text).toBe(STREAM_TEXT)

    const listed = capture()
    expect(await cli(['keys', 'list', '--team', 'ml'], env, listed)).toBe(0)
    expect(listed.out).toContain(id)
    expect(listed.out).not.toContain(key)

    const updated = capture()
    expect(await cli(['keys', 'update', id, '--limits', '{"concurrent_requests":3}'], env, updated)).toBe(0)
    expect(JSON.parse(updated.out)).toMatchObject({ id, limits: { concurrent_requests: 3 } })

    const rotated = capture()
    expect(await cli(['keys', 'rotate', id, '--grace-seconds', '600'], env, rotated)).toBe(0)
    const { key: newKey, replaces } = JSON.parse(rotated.out) as { key: string; replaces: { id: string; replaced_by: string } }
    expect(replaces.id).toBe(id)
    expect(newKey).toMatch(/^tg-/)

    const revoked = capture()
    expect(await cli(['keys', 'revoke', id], env, revoked)).toBe(0)
    expect(revoked.out.trim()).toBe('revoked')
    await expect(client.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError)

    const usage = capture()
    expect(await cli(['usage', '--team', 'ml', '--group-by', 'model', '--format', 'csv'], env, usage)).toBe(0)
    expect(usage.out).toMatch(
      /^team,model,requests,prompt_tokens,completion_tokens,total_tokens,estimated_requests,cost_usd\nml,minimaxai\/minimax-m2.1,1,\d+,\d+,\d+,0,0\n$/,
    )

    const teams = capture()
    expect(await cli(['teams', 'list'], env, teams)).toBe(0)
    expect((JSON.parse(teams.out) as { data: { id: string }[] }).data.map((t) => t.id)).toEqual(['ml'])
  })

  it('the CLI reports refusals and usage errors with their exit codes', async () => {
    const env = { TOLLGATE_URL: url, ADMIN_TOKEN: ADMIN }
    const dup = capture()
    expect(await cli(['teams', 'create', 'ml'], env, dup)).toBe(1)
    expect(dup.err).toContain('409')
    const wrong = capture()
    expect(await cli(['teams', 'list'], { ...env, ADMIN_TOKEN: 'not-the-token-at-all' }, wrong)).toBe(1)
    expect(wrong.err).toContain('401')
    const usage = capture()
    expect(await cli(['keys', 'create'], env, usage)).toBe(2)
    expect(usage.err).toContain('--team')
    const noToken = capture()
    expect(await cli(['teams', 'list'], { TOLLGATE_URL: url }, noToken)).toBe(2)
    expect(noToken.err).toContain('ADMIN_TOKEN')
    const badLimits = capture()
    expect(await cli(['teams', 'create', 'x', '--limits', 'nope'], env, badLimits)).toBe(2)
    const down = capture()
    expect(await cli(['teams', 'list'], { ...env, TOLLGATE_URL: `http://127.0.0.1:${await freePort()}` }, down)).toBe(1)
    expect(down.err).toContain('cannot reach the gateway')
  })

  it('writes its log lines while it runs, and the last ones as it exits on SIGTERM (exit 0)', async () => {
    // Standard output is written in blocks: a line must still come out on its own while the
    // gateway is idle, and a line logged just before the end must not be lost.
    const refused = (id: string) => fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer not-a-key', 'x-request-id': id } })
    expect((await refused('line-while-running')).status).toBe(401)
    await waitFor(() => server.output().includes('"reqId":"line-while-running"'), 'the line to be written while the gateway runs')
    expect((await refused('line-before-exit')).status).toBe(401)
    server.child.kill('SIGTERM')
    const [code] = await once(server.child, 'exit')
    expect(code).toBe(0)
    expect(server.output()).toContain('"reqId":"line-before-exit"')
    expect(server.output()).toContain('shutting down')
  })
})

describe('a first run', () => {
  it('with nothing configured prints, once, an admin token and a key that work at once, and logs neither', async () => {
    const upstream = await new FakeUpstream().start()
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    const server = startServer({
      PORT: String(port),
      HOST: '127.0.0.1',
      NVIDIA_BASE_URL: upstream.baseUrl,
      NVIDIA_API_KEY: upstream.apiKeys[0]!,
    })
    try {
      await waitFor(() => /key of team 'default': +tg-/.test(server.output()), 'the first-run note', 20_000)
      const key = /key of team 'default': +(tg-\S+)/.exec(server.output())![1]!
      const token = /admin token: +(\S+)/.exec(server.output())![1]!
      // The note's own command, as a newcomer would paste it.
      const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 })
      const answer = await client.chat.completions.create({
        model: 'minimaxai/minimax-m2.1',
        messages: [{ role: 'user', content: 'Hello!' }],
      })
      expect(answer.choices[0]!.message.content).toBe(STREAM_TEXT)
      expect(server.output()).toContain(`curl ${url}/v1/chat/completions -H "Authorization: Bearer ${key}"`)
      expect((await fetch(`${url}/admin/teams`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200)
      // The console the note names is served, and the printed token signs in to it.
      expect(server.output()).toContain(`Web console: ${url}/console`)
      expect((await fetch(`${url}/console/`)).headers.get('content-type')).toMatch(/^text\/html/)
      const signIn = await fetch(`${url}/console/api/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
      })
      expect(((await signIn.json()) as { role: string }).role).toBe('admin')
      const logLines = server
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{'))
      expect(logLines.length).toBeGreaterThan(0)
      expect(logLines.filter((l) => l.includes(key) || l.includes(token))).toEqual([])
    } finally {
      server.child.kill('SIGKILL')
      await upstream.close()
    }
  })
})

describe('npm start', () => {
  it('passes SIGTERM to the gateway, which drains and exits, not to a shell that leaves it running', async () => {
    const port = await freePort()
    // (npm ci has built dist; --ignore-scripts skips the prestart build.)
    const npm = spawn('npm', ['start', '--ignore-scripts'], {
      env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', ADMIN_TOKEN: ADMIN },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    npm.stdout!.on('data', (d: Buffer) => (out += d.toString()))
    const url = `http://127.0.0.1:${port}`
    try {
      await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => null))?.status === 200, 'the gateway to start', 20_000)
      npm.kill('SIGTERM')
      await waitFor(() => out.includes('shutting down'), 'the gateway to drain', 10_000)
      await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => null)) === null, 'the gateway to stop listening', 10_000)
    } finally {
      npm.kill('SIGKILL')
    }
  })
})
