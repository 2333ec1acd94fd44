import { Command } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { ScriptCommand, type Arg } from '../../src/quota/resp.js'

/** What a command puts on the wire: its writable, as the socket encodes a string (UTF-8). */
const wire = (w: string | Buffer) => (typeof w === 'string' ? Buffer.from(w, 'utf8') : w)
/** What ioredis itself sends for the same command. */
const ioredis = (name: string, args: Arg[]) => wire(new Command(name, args).toWritable({}))
const ours = (name: string, args: Arg[]) => wire(new ScriptCommand(name, [...args]).toWritable({}))

describe('ScriptCommand (RESP for the batched script calls)', () => {
  const cases: [string, Arg[]][] = [
    ['evalsha', ['0123456789abcdef0123456789abcdef01234567', 2, 'tg:{t:team}:key:rpm', 'tg:{t:team}:key:tpm', 1732924800123, -1, 0.5]],
    ['set', ['', 'an empty argument']],
    ['ping', []],
    // Long ASCII either side of the length's digit boundaries.
    ['eval', ['a'.repeat(9), 'b'.repeat(10), 'c'.repeat(99_999), 'd'.repeat(100_000)]],
    // Where characters and bytes differ: two-byte characters (9 of them, 18 bytes), three-byte
    // ones, a one-byte string above ASCII, emoji (surrogate pairs), a lone surrogate, all amid ASCII.
    ['hset', ['tg:{t:équipe}:clé:rpm', 'é'.repeat(9), '€€€€', 'caf\u00e9', '🙂'.repeat(3), 'x\ud800y', 'plain']],
  ]
  for (const [name, args] of cases) {
    it(`puts on the wire what ioredis does: ${name} with ${args.length} arguments`, () => {
      expect(ours(name, args).equals(ioredis(name, args))).toBe(true)
    })
  }

  it('a batch of hundreds of arguments, one of them not ASCII, goes out as ioredis would send it', () => {
    const args: Arg[] = []
    for (let i = 0; i < 400; i++) args.push(i, `tg:{t:team-${i}}:key:rpm`, i * 1.25, '')
    expect(ours('evalsha', args).equals(ioredis('evalsha', args))).toBe(true)
    args[777] = 'modèle'
    expect(ours('evalsha', args).equals(ioredis('evalsha', args))).toBe(true)
  })

  it('keeps its arguments as the strings ioredis would have made', () => {
    expect(new ScriptCommand('evalsha', ['sha', 1, 'key', 42, -0.5]).args).toEqual(['sha', '1', 'key', '42', '-0.5'])
  })
})
