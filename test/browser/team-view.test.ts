import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { screenshots, seriousViolations, useBrowser } from './browser.js'
import { FakeUpstream } from '../helpers/fake-upstream.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

/**
 * A team lead signs in to the console with a client key: the page shows that key's team only (its
 * limits, what remains, its usage), nothing writable, and the admin API refuses the session.
 */

const MODEL = 'minimaxai/minimax-m2.1'

describe("the console's team view", () => {
  const handle = useBrowser()
  let upstream: FakeUpstream
  let gw: TestGateway

  beforeAll(async () => {
    upstream = await new FakeUpstream().start()
    gw = await startGateway({ upstream })
    await gw.admin('POST', '/admin/teams', { id: 'search', name: 'Search', limits: { requests_per_minute: 60, tokens_per_day: 50_000 } })
    await gw.admin('POST', '/admin/teams', { id: 'payroll', name: 'Payroll' })
  })
  afterAll(async () => {
    await gw.close()
    await upstream.close()
  })

  it("shows only the key's own team, read-only, and the admin API refuses it", async () => {
    const key = ((await (await gw.admin('POST', '/admin/teams/search/keys', { name: 'lead' })).json()) as { key: string }).key
    const other = ((await (await gw.admin('POST', '/admin/teams/payroll/keys', {})).json()) as { key: string; id: string }).id
    const client = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 })
    await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }] })
    await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hello again' }] })

    const context = await handle.browser.newContext({ viewport: { width: 1280, height: 800 } })
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    await page.goto(`${gw.url}/console/`)
    await page.getByLabel('Admin token or client key').fill(key)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('heading', { name: /Search/, level: 1 }).waitFor()

    // Its team's limits and what remains; no admin pages, nothing to change.
    const meter = page.getByRole('meter', { name: 'Team search: Requests / min' })
    expect(await meter.getAttribute('aria-valuenow')).toBe('2')
    expect(await meter.getAttribute('aria-valuemax')).toBe('60')
    await page.locator('table.usage-table tbody tr [data-col="requests"]').first().waitFor()
    expect(await page.locator('table.usage-table tbody tr [data-col="requests"]').allTextContents()).toEqual(['2'])
    expect(await page.getByRole('link', { name: 'Teams' }).count()).toBe(0)
    expect(await page.getByRole('button', { name: /Create|Edit|Revoke|Rotate|New team/ }).count()).toBe(0)
    const text = await page.locator('body').textContent()
    expect(text).not.toContain('payroll')
    expect(text).not.toContain(key)

    // From the page itself, with the session's own CSRF token: the admin API refuses, nothing changes.
    const answers = await page.evaluate(async (otherKey) => {
      const session = (await (await fetch('/console/api/session')).json()) as { csrf_token: string }
      const headers = { 'content-type': 'application/json', 'x-csrf-token': session.csrf_token }
      const statuses: number[] = []
      statuses.push((await fetch('/admin/teams')).status)
      statuses.push((await fetch('/admin/teams', { method: 'POST', headers, body: JSON.stringify({ id: 'mine-now' }) })).status)
      statuses.push((await fetch(`/admin/keys/${otherKey}`, { method: 'DELETE', headers })).status)
      statuses.push((await fetch('/console/api/usage?team=payroll')).status)
      return statuses
    }, other)
    expect(answers).toEqual([403, 403, 403, 403])
    expect((await gw.admin('GET', '/admin/teams/mine-now')).status).toBe(404)
    expect(((await (await gw.admin('GET', `/admin/keys/${other}`)).json()) as { revoked_at: string | null }).revoked_at).toBeNull()

    const { overflow } = await screenshots(page, 'team-view')
    expect(overflow).toEqual({ desktop: 0, phone: 0 })
    expect(await seriousViolations(page)).toEqual([])
    expect(errors).toEqual([])
    await context.close()
  })

  it('refuses a wrong token on the page, in words, and keeps the form', async () => {
    const page = await handle.browser.newPage()
    await page.goto(`${gw.url}/console/`)
    await page.getByLabel('Admin token or client key').fill('tg-not-a-real-key-000000000000000000000000')
    await page.getByRole('button', { name: 'Sign in' }).click()
    const alert = page.getByRole('alert')
    await alert.waitFor()
    expect(await alert.textContent()).toBe('That is neither the admin token nor an active client key.')
    expect((await page.context().cookies()).map((c) => c.name)).toEqual([])
    expect(await seriousViolations(page)).toEqual([])
    await page.close()
  })
})
