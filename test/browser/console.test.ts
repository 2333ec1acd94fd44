import OpenAI from 'openai'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { screenshots, seriousViolations, useBrowser } from './browser.js'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { ADMIN_TOKEN, startGateway, type TestGateway } from '../helpers/gateway.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'

/**
 * The operator's story in the web console, in headless Chromium: sign in with the admin token,
 * create a team and a key, send real requests with the key through the openai client, read them
 * in the usage charts and table (the same figures as /admin/usage), revoke the key, sign out. On
 * the embedded store, and on Redis with the console on one instance and the client on another.
 */

const MODEL = 'minimaxai/minimax-m2.1'
const today = () => new Date().toISOString().slice(0, 10)

interface Setup {
  /** The instance the browser talks to. */
  console: TestGateway
  /** The instance the openai client talks to (the same one on the embedded store). */
  client: TestGateway
  close(): Promise<void>
}

async function embedded(upstream: FakeUpstream): Promise<Setup> {
  const gw = await startGateway({ upstream })
  return { console: gw, client: gw, close: () => gw.close() }
}

async function onRedis(upstream: FakeUpstream): Promise<Setup> {
  const redis: RedisServer = await startRedis()
  const env = { REDIS_URL: redis.url }
  const a = await startGateway({ upstream, env })
  const b = await startGateway({ upstream, env })
  return {
    console: a,
    client: b,
    close: async () => {
      await a.close()
      await b.close()
      await redis.stop()
    },
  }
}

/** The cells of the usage table's rows, by column. */
async function usageTable(page: Page): Promise<Record<string, string>[]> {
  return page.$$eval('table.usage-table tbody tr', (rows) =>
    rows
      .filter((row) => row.querySelector('[data-col]') !== null)
      .map((row) => {
        const cells: Record<string, string> = {}
        const tds = row.querySelectorAll('td')
        cells.team = tds[0]!.textContent ?? ''
        cells.when = tds[1]!.textContent ?? ''
        cells.model = tds[2]!.textContent ?? ''
        cells.key = tds[3]!.textContent ?? ''
        for (const td of row.querySelectorAll('[data-col]')) cells[td.getAttribute('data-col')!] = td.textContent ?? ''
        return cells
      }),
  )
}

const count = (text: string) => Number(text.replace(/[^0-9.]/g, ''))

describe.each([
  ['the embedded store', embedded],
  ['Redis, two instances', onRedis],
] as const)('the web console on %s', (_name, start) => {
  const handle = useBrowser()
  let upstream: FakeUpstream
  let setup: Setup

  beforeAll(async () => {
    upstream = await new FakeUpstream().start()
    setup = await start(upstream)
  })
  afterAll(async () => {
    await setup.close()
    await upstream.close()
  })

  it('walks the operator story: sign in, team, key, requests, usage, revoke, sign out', { timeout: 90_000 }, async () => {
    const store = _name === 'the embedded store' ? 'embedded' : 'redis'
    const context = await handle.browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true })
    const page = await context.newPage()
    const problems: string[] = []
    page.on('pageerror', (err) => problems.push(err.message))
    page.on('console', (msg) => {
      // (A refused request is logged by the browser as a failed resource load: expected here.)
      if (msg.type() === 'error' && !msg.text().includes('Failed to load resource')) problems.push(msg.text())
    })
    const base = setup.console.url

    // Sign in with the admin token: a session cookie, HttpOnly and SameSite=Strict; nothing kept in storage.
    await page.goto(`${base}/console`)
    await page.getByLabel('Admin token or client key').fill(ADMIN_TOKEN)
    if (store === 'embedded') expect((await screenshots(page, 'sign-in')).overflow).toEqual({ desktop: 0, phone: 0 })
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { name: 'Teams', level: 1 }).waitFor()
    const cookie = (await context.cookies()).find((c) => c.name === 'tollgate_session')!
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', secure: false, path: '/' })
    expect(cookie.expires).toBeGreaterThan(Date.now() / 1000)
    const stored = await page.evaluate(() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }, document.cookie]))
    expect(stored).not.toContain(ADMIN_TOKEN)
    expect(stored).not.toContain(cookie.value)

    // A new team: a refused value is shown beside its field in the API's own words, then fixed.
    await page.getByRole('button', { name: 'New team' }).click()
    const form = page.getByRole('form', { name: 'New team' })
    await form.getByLabel('Team id').fill('web')
    await form.getByLabel('Name', { exact: true }).fill('Web team')
    await form.locator('input[name="limits.requests_per_minute"]').fill('100')
    await form.locator('input[name="limits.tokens_per_day"]').fill('2.5')
    await form.locator('input[name="limits.usd_per_day"]').fill('5')
    await form.getByRole('button', { name: 'Create team' }).click()
    const fieldError = form.locator('#err-limits\\.tokens_per_day')
    await fieldError.waitFor()
    const api = await setup.console.admin('POST', '/admin/teams', {
      id: 'web',
      name: 'Web team',
      limits: { requests_per_minute: 100, tokens_per_day: 2.5, usd_per_day: 5 },
    })
    expect(api.status).toBe(400)
    const refusal = (await api.json()) as { error: { message: string; param: string } }
    expect(refusal.error.param).toBe('limits.tokens_per_day')
    expect(await fieldError.textContent()).toBe(refusal.error.message)
    expect((await setup.console.admin('GET', '/admin/teams/web')).status).toBe(404)
    await form.locator('input[name="limits.tokens_per_day"]').fill('100000')
    await form.getByRole('button', { name: 'Create team' }).click()
    await page.getByRole('heading', { name: /Web team/, level: 1 }).waitFor()
    expect(await (await setup.console.admin('GET', '/admin/teams/web')).json()).toMatchObject({
      name: 'Web team',
      limits: { requests_per_minute: 100, tokens_per_day: 100000, usd_per_day: 5 },
    })

    // A key, read from the page where it is shown once.
    await page.getByLabel('Key name').fill('web-key')
    await page.getByRole('button', { name: 'Create key' }).click()
    const shown = page.locator('#new-key-value')
    await shown.waitFor()
    const key = (await shown.textContent())!.trim()
    const keyId = (await shown.getAttribute('data-key-id'))!
    expect(key).toMatch(/^tg-/)
    await page.locator(`tr[data-key-id="${keyId}"]`).waitFor()
    if (store === 'embedded') {
      expect((await screenshots(page, 'team')).overflow).toEqual({ desktop: 0, phone: 0 })
      expect(await seriousViolations(page)).toEqual([])
    }

    // Real requests with that key, through the openai client (on the other instance, with Redis).
    const client = new OpenAI({ apiKey: key, baseURL: `${setup.client.url}/v1`, maxRetries: 0 })
    for (const content of ['Hello', 'How are you today?']) {
      await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }] })
    }
    const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Stream' }], stream: true })
    for await (const _ of stream) void _

    // The usage page: the same rows as /admin/usage with the same query, and the chart's total.
    await page.getByRole('link', { name: 'Usage' }).click()
    await page.getByRole('heading', { name: 'Usage', level: 1 }).waitFor()
    await page.getByLabel('Team').selectOption('web')
    await page.getByRole('button', { name: 'Show' }).click()
    await page.locator('table.usage-table tbody tr [data-col="requests"]').first().waitFor()
    const q = `team=web&from=${await page.getByLabel('From').inputValue()}&to=${today()}&group_by=day,model,key`
    const report = (await (await setup.console.admin('GET', `/admin/usage?${q}`)).json()) as {
      data: {
        day: string
        model: string
        key: string
        requests: number
        prompt_tokens: number
        completion_tokens: number
        total_tokens: number
      }[]
    }
    expect(report.data).toHaveLength(1)
    expect(report.data[0]).toMatchObject({ day: today(), model: MODEL, key: keyId, requests: 3 })
    const rows = await usageTable(page)
    expect(
      rows.map((r) => [
        r.when,
        r.model,
        r.key,
        count(r.requests!),
        count(r.prompt_tokens!),
        count(r.completion_tokens!),
        count(r.total_tokens!),
      ]),
    ).toEqual(report.data.map((r) => [r.day, r.model, r.key, r.requests, r.prompt_tokens, r.completion_tokens, r.total_tokens]))
    const chart = page.locator('[data-chart="requests"]')
    expect(await chart.locator('canvas').count()).toBe(1)
    expect(await chart.getByRole('img').getAttribute('aria-label')).toContain('Requests 3 in all')
    const tokensChart = await page.locator('[data-chart="tokens"]').getByRole('img').getAttribute('aria-label')
    expect(tokensChart).toContain(`Prompt tokens ${report.data[0]!.prompt_tokens} in all`)

    // Per hour: the same totals, in this hour's row.
    await page.getByLabel('Per').selectOption('hour')
    await page.getByRole('button', { name: 'Show' }).click()
    await page.locator('table.usage-table caption', { hasText: 'per hour' }).waitFor()
    await page.locator('table.usage-table tbody tr [data-col="requests"]').first().waitFor()
    const hourly = await usageTable(page)
    expect(hourly.map((r) => count(r.requests!)).reduce((a, b) => a + b, 0)).toBe(3)
    expect(hourly.map((r) => count(r.total_tokens!)).reduce((a, b) => a + b, 0)).toBe(report.data[0]!.total_tokens)

    // The CSV download is /admin/usage's CSV for the same query.
    const downloading = page.waitForEvent('download')
    await page.getByRole('link', { name: 'Download CSV' }).click()
    const download = await downloading
    const chunks: Buffer[] = []
    for await (const chunk of (await download.createReadStream())!) chunks.push(chunk as Buffer)
    const csv = Buffer.concat(chunks).toString('utf8')
    const hourQuery = q.replace('group_by=day,model,key', 'group_by=hour,model,key')
    expect(csv).toBe(await (await setup.console.admin('GET', `/admin/usage?${hourQuery}&format=csv`)).text())
    if (store === 'embedded') {
      expect((await screenshots(page, 'usage')).overflow).toEqual({ desktop: 0, phone: 0 })
      expect(await seriousViolations(page)).toEqual([])
    }

    // The teams list shows the team's live use as bars.
    await page.getByRole('link', { name: 'Teams' }).click()
    const meter = page.getByRole('meter', { name: 'Team web: Requests / min' })
    await meter.waitFor()
    expect(await meter.getAttribute('aria-valuenow')).toBe('3')
    expect(await meter.getAttribute('aria-valuemax')).toBe('100')
    if (store === 'embedded') {
      expect((await screenshots(page, 'teams')).overflow).toEqual({ desktop: 0, phone: 0 })
      expect(await seriousViolations(page)).toEqual([])
    }

    // Upstreams: the key pool, by hint, never the key.
    await page.getByRole('link', { name: 'Upstreams' }).click()
    await page.getByRole('table', { name: 'Keys of nvidia' }).waitFor()
    const upstreamText = await page.locator('main').textContent()
    expect(upstreamText).toContain('nvapi-…0001')
    expect(upstreamText).toContain('active')
    expect(upstreamText).not.toContain(upstream.apiKeys[0])
    if (store === 'embedded') {
      expect((await screenshots(page, 'upstreams')).overflow).toEqual({ desktop: 0, phone: 0 })
      expect(await seriousViolations(page)).toEqual([])
    }

    // Edit the team: a malformed pattern is refused beside its field, in the API's words; then saved.
    await page.goto(`${base}/console/#/teams/web`)
    await page.getByRole('button', { name: 'Edit team' }).click()
    const edit = page.getByRole('form', { name: 'Edit team web' })
    await edit.getByLabel(/^Allowed models/).fill('minimaxai/*\n[')
    await edit.getByRole('button', { name: 'Save team' }).click()
    const patternError = edit.locator('#err-allowed_models')
    await patternError.waitFor()
    const patch = await setup.console.admin('PATCH', '/admin/teams/web', { allowed_models: ['minimaxai/*', '['] })
    expect(patch.status).toBe(400)
    expect(await patternError.textContent()).toBe(((await patch.json()) as { error: { message: string } }).error.message)
    await edit.getByLabel(/^Allowed models/).fill('minimaxai/*')
    await edit.locator('input[name="limits.usd_per_day"]').fill('')
    await edit.getByRole('button', { name: 'Save team' }).click()
    await page.getByRole('button', { name: 'Edit team' }).waitFor()
    const edited = (await (await setup.console.admin('GET', '/admin/teams/web')).json()) as { allowed_models: string[]; limits: object }
    expect(edited.allowed_models).toEqual(['minimaxai/*'])
    expect(edited.limits).toEqual({ requests_per_minute: 100, tokens_per_day: 100000 })

    // Rotate with a grace period: the new key is shown once; the old one is rotating out.
    await page
      .locator(`tr[data-key-id="${keyId}"]`)
      .getByRole('button', { name: /^Rotate/ })
      .click()
    await page.getByLabel('Grace period (seconds)').fill('600')
    await page.getByRole('button', { name: 'Confirm rotate' }).click()
    await expect.poll(() => page.locator('#new-key-value').getAttribute('data-key-id')).not.toBe(keyId)
    const rotated = (await page.locator('#new-key-value').textContent())!.trim()
    await expect.poll(() => page.locator(`tr[data-key-id="${keyId}"] [data-col="state"]`).textContent()).toBe('rotating out')
    const next = new OpenAI({ apiKey: rotated, baseURL: `${setup.client.url}/v1`, maxRetries: 0 })
    await next.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'New key' }] })

    // Revoke the old key, after a confirmation: its next request (on any instance) is refused with
    // a 401; the new key goes on.
    await page
      .locator(`tr[data-key-id="${keyId}"]`)
      .getByRole('button', { name: /^Revoke/ })
      .click()
    await page.getByRole('button', { name: 'Confirm revoke' }).click()
    await expect.poll(() => page.locator(`tr[data-key-id="${keyId}"] [data-col="state"]`).textContent()).toBe('revoked')
    const refused = await client.chat.completions
      .create({ model: MODEL, messages: [{ role: 'user', content: 'Again' }] })
      .catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError)
    expect((refused as InstanceType<typeof OpenAI.AuthenticationError>).status).toBe(401)
    await next.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Still here' }] })

    // Sign out: the sign-in form again, and the old cookie opens nothing.
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByLabel('Admin token or client key').waitFor()
    const after = await fetch(`${base}/admin/teams`, { headers: { cookie: `tollgate_session=${cookie.value}` } })
    expect(after.status).toBe(401)
    expect(((await after.json()) as { error: { code: string } }).error.code).toBe('invalid_session')
    expect(problems).toEqual([])
    await context.close()
  })
})
