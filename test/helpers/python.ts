import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = new URL('../..', import.meta.url).pathname
const REQUIREMENTS = join(ROOT, 'test/python/requirements.txt')
const VENV = join(ROOT, '.venv-test')

/**
 * A virtualenv with the pinned Python clients (test/python/requirements.txt), made on first use
 * from the package registry and made again when the pins change. Returns its python.
 */
export async function pythonClients(): Promise<string> {
  const python = join(VENV, 'bin', 'python')
  const stamp = join(VENV, 'requirements.sha256')
  const want = createHash('sha256').update(readFileSync(REQUIREMENTS)).digest('hex')
  if (existsSync(python) && existsSync(stamp) && readFileSync(stamp, 'utf8') === want) return python
  await run('python3', ['-m', 'venv', '--clear', VENV])
  await run(join(VENV, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', '-r', REQUIREMENTS], {
    maxBuffer: 16 * 1024 * 1024,
  })
  writeFileSync(stamp, want)
  return python
}

/** Runs one scenario of test/python/clients.py and returns what it printed. */
export async function pythonScenario(python: string, scenario: string, baseUrl: string, apiKey: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(python, [join(ROOT, 'test/python/clients.py'), scenario, baseUrl, apiKey], { timeout: 60_000 })
  return JSON.parse(stdout) as Record<string, unknown>
}
