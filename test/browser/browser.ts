import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll } from 'vitest'

/**
 * Headless Chromium for the console's tests, driven by playwright-core through Debian's browser
 * (no browser download at install time): CHROMIUM_PATH, else the first of the paths below that
 * exists. `.ci/run` installs chromium-headless-shell when none does.
 */
const CANDIDATES = [
  '/usr/bin/chromium-headless-shell',
  '/usr/lib/chromium/chromium-headless-shell',
  '/usr/bin/chromium',
  '/usr/bin/google-chrome',
]

export function chromiumPath(): string {
  const path = process.env.CHROMIUM_PATH ?? CANDIDATES.find((p) => existsSync(p))
  if (path === undefined) {
    throw new Error(
      "No Chromium for the browser tests: install Debian's chromium-headless-shell (apt-get install chromium-headless-shell) or set CHROMIUM_PATH",
    )
  }
  return path
}

/** Where the tests write screenshots for a person to look at (git ignores it). */
export const SCREENSHOTS = new URL('../../test-results/console/', import.meta.url).pathname

export const VIEWPORTS = { desktop: { width: 1280, height: 800 }, phone: { width: 390, height: 844 } } as const

/** One browser for a test file, started before its tests and closed after them. */
export function useBrowser(): { browser: Browser } {
  const handle = {} as { browser: Browser }
  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true })
    handle.browser = await chromium.launch({
      executablePath: chromiumPath(),
      // As root in a container, Chromium's sandbox cannot start; background services would try the
      // network, which is closed here.
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
  })
  afterAll(async () => {
    await handle.browser?.close()
  })
  return handle
}

/** A screenshot of the page at both sizes (full page), named `<name>-desktop.png` and `<name>-phone.png`. */
export async function screenshots(page: Page, name: string): Promise<{ overflow: Record<string, number> }> {
  const overflow: Record<string, number> = {}
  const before = page.viewportSize()
  for (const [size, viewport] of Object.entries(VIEWPORTS)) {
    await page.setViewportSize(viewport)
    // Two frames: what resizes itself with the window (the charts, through a ResizeObserver) has.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))))
    // How far the page is wider than the window (0: no sideways scrolling; tables scroll in their own box).
    overflow[size] = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    await page.screenshot({ path: `${SCREENSHOTS}${name}-${size}.png`, fullPage: true })
  }
  if (before) await page.setViewportSize(before)
  return { overflow }
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

/** axe-core's serious and critical violations on the page as it is now (rule id and the elements it names). */
export async function seriousViolations(page: Page): Promise<{ id: string; nodes: string[] }[]> {
  // Evaluated through the DevTools protocol, which the page's CSP (no inline script) does not govern.
  await page.evaluate(axeSource)
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, opts: object) => Promise<{ violations: unknown[] }> } }).axe
    const result = await axe.run(document, { resultTypes: ['violations'] })
    return result.violations as { id: string; impact: string; nodes: { target: string[] }[] }[]
  })
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, nodes: v.nodes.map((n) => n.target.join(' ')) }))
}
