import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { pino } from 'pino'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { BlockWriter, LOG_FLUSH_MS } from '../../src/logger.js'

/** The log's standard output: lines gathered into blocks, none lost, none reordered. */

class Recorder {
  writes: string[] = []
  synced = 0
  write(data: string): boolean {
    this.writes.push(data)
    return true
  }
  flushSync(): void {
    this.synced++
  }
}

const line = (i: number, pad = 0) => `{"n":${i}${' '.repeat(pad)}}\n`

describe('BlockWriter', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('holds lines until a block is full, then writes them as one block, in order', () => {
    const out = new Recorder()
    const writer = new BlockWriter(out, 100)
    for (let i = 0; i < 4; i++) writer.write(line(i, 10)) // 4 × 18 characters: 72, under 100
    expect(out.writes).toEqual([])
    writer.write(line(4, 10)) // 90
    writer.write(line(5, 10)) // 108: the block is full
    expect(out.writes).toEqual([[0, 1, 2, 3, 4, 5].map((i) => line(i, 10)).join('')])
    writer.write(line(6))
    writer.flush()
    writer.flush() // nothing gathered: nothing written
    expect(out.writes).toEqual([[0, 1, 2, 3, 4, 5].map((i) => line(i, 10)).join(''), line(6)])
  })

  it('writes what it holds within LOG_FLUSH_MS, however few lines there are', () => {
    vi.useFakeTimers()
    const out = new Recorder()
    const writer = new BlockWriter(out)
    writer.write(line(1))
    writer.write(line(2))
    vi.advanceTimersByTime(LOG_FLUSH_MS - 1)
    expect(out.writes).toEqual([])
    vi.advanceTimersByTime(1)
    expect(out.writes).toEqual([line(1) + line(2)])
  })

  it("pino's logger.flush hands over what is held, then calls back", async () => {
    const out = new Recorder()
    const logger = pino({ base: null, timestamp: false }, new BlockWriter(out))
    logger.info('one')
    expect(out.writes).toEqual([])
    await new Promise<void>((resolve, reject) => logger.flush((err) => (err ? reject(err) : resolve())))
    expect(out.writes).toEqual(['{"level":30,"msg":"one"}\n'])
  })

  it('flushSync hands over what it holds before the destination writes synchronously', () => {
    const out = new Recorder()
    const writer = new BlockWriter(out)
    writer.write(line(1))
    writer.flushSync()
    expect(out.writes).toEqual([line(1)])
    expect(out.synced).toBe(1)
  })

  // The real standard output, in a process of its own: the last lines come out however it ends.
  const runChild = async (ending: string) => {
    const source = `
      import { createLogger } from './src/logger.ts'
      const log = createLogger('info')
      for (let i = 0; i < 3; i++) log.info({ n: i }, 'before the end')
      ${ending}
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const [code] = (await once(child, 'exit')) as [number]
    return {
      code,
      lines: out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { n?: number; msg: string }),
    }
  }

  it('writes the last lines when the process exits at once, and when it crashes', async () => {
    const exited = await runChild('process.exit(0)')
    expect(exited.code).toBe(0)
    expect(exited.lines.map((l) => l.n)).toEqual([0, 1, 2])

    const crashed = await runChild("setImmediate(() => { throw new Error('boom') })")
    expect(crashed.code).toBe(1)
    expect(crashed.lines.map((l) => l.n)).toEqual([0, 1, 2])
  })
})
