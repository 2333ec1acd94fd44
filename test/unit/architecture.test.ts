import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'

/** docs/architecture.md's map of src/ names every file of the tree, and nothing else. */

const SRC = new URL('../../src/', import.meta.url).pathname

function tree(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tree(join(dir, e.name)) : [relative(SRC, join(dir, e.name))],
  )
}

function mapped(): string[] {
  const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8')
  const files = doc.slice(doc.indexOf('## Files'))
  const block = /```text\n([\s\S]*?)```/.exec(files)![1]!
  return block
    .split('\n')
    .map((line) => line.split(/\s+/)[0]!)
    .filter((name) => name !== '')
}

describe('the architecture doc', () => {
  it('maps every file under src/ (a folder ending in / stands for its files), and only those', () => {
    const names = mapped()
    expect(new Set(names).size).toBe(names.length)
    const covered = (file: string) => names.some((n) => n === file || (n.endsWith('/') && file.startsWith(n)))
    expect(tree(SRC).filter((f) => !covered(f))).toEqual([])
    const present = new Set(tree(SRC))
    expect(names.filter((n) => !(n.endsWith('/') ? [...present].some((f) => f.startsWith(n)) : present.has(n)))).toEqual([])
  })

  it('holds at most one src file over 300 lines, and names it', () => {
    const long = tree(SRC).filter((f) => f.endsWith('.ts') && readFileSync(join(SRC, f), 'utf8').split('\n').length > 301)
    expect(long.length).toBeLessThanOrEqual(1)
    const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8')
    for (const f of long) expect(doc).toContain(`Only \`${f}\` is over 300 lines`)
  })

  it('loads Lua scripts in one file only (src/redis/scripts.ts), and never through defineCommand', () => {
    const loaders = tree(SRC).filter((f) => {
      if (!f.endsWith('.ts')) return false
      const text = readFileSync(join(SRC, f), 'utf8')
      return text.includes('defineCommand') || /\.lua[`'"]\s*[,)]/.test(text)
    })
    expect(loaders).toEqual(['redis/scripts.ts'])
  })
})
