/**
 * Making and encoding one batched script call, three ways:
 *   - ioredis's Command as ioredis makes it: its arguments copied with Array.prototype.flat, then
 *     a string concatenated from some four pieces per argument with one Buffer.byteLength each,
 *     then the socket's UTF-8 encoding of that;
 *   - the gateway's way (src/quota/scripts.ts): the same Command made empty and given the
 *     arguments, so no flat;
 *   - one string with each argument's length in characters, checked with one Buffer.byteLength of
 *     the whole (equal only when all of it is ASCII): measured, and not what the gateway does.
 * Each way copies the argument list once, as the gateway does when it puts the script, the keys
 * and the arguments together. The batch is 12 admissions of a
 * team with two scopes, as under load at c=64: 350 arguments.
 *
 *   cd bench && node --import tsx script-encoding.ts
 */
import { Command } from 'ioredis'
import { flatCommand } from '../src/redis/scripts.js'
import { median } from './lib.js'

const args: string[] = ['0123456789abcdef0123456789abcdef01234567', '144']
for (let r = 0; r < 12; r++) for (let s = 0; s < 12; s++) args.push(`tg:{t:bench}:key-${s}:rpm`)
for (let r = 0; r < 12; r++) {
  args.push(
    String(1_732_924_800_123 + r),
    'b2c1f0a4-3c2d-4f1e-9a8b-7c6d5e4f3a2b',
    '120',
    '1732924830123',
    '1732924800000',
    '1732924800000',
    '2',
  )
  for (let s = 0; s < 2; s++) args.push('100000000', '-1', '1000000000000', '-1', '100000')
}
const wire = (w: string | Buffer) => (typeof w === 'string' ? Buffer.from(w, 'utf8') : w)
/** One string, one byte count; null when not all ASCII (then ioredis's own way would be taken). */
function oneString(name: string, list: string[]): string | null {
  let out = `*${list.length + 1}\r\n$${name.length}\r\n${name}\r\n`
  for (const a of list) out += `$${a.length}\r\n${a}\r\n`
  return Buffer.byteLength(out) === out.length ? out : null
}
const ways: [string, () => Buffer][] = [
  ["ioredis's Command as ioredis makes it (arguments copied with flat)", () => wire(new Command('evalsha', [...args]).toWritable({}))],
  ["ioredis's Command made empty, given the arguments (the gateway's way)", () => wire(flatCommand('evalsha', [...args]).toWritable({}))],
  [
    'the same Command, written as one string with one byte count (tried, not kept)',
    () => {
      const command = flatCommand('evalsha', [...args])
      return wire(oneString(command.name, command.args as string[])!)
    },
  ],
]
const times = new Map<string, number[]>(ways.map(([name]) => [name, []]))
for (let round = 0; round < 15; round++) {
  for (const [name, encode] of round % 2 === 0 ? ways : [...ways].reverse()) {
    for (let i = 0; i < 500; i++) encode()
    const n = 5_000
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) encode()
    times.get(name)!.push(Number(process.hrtime.bigint() - t0) / n / 1000)
  }
}
console.log(`| way | µs per call of ${args.length} arguments (median of 15 rounds) |\n| --- | --- |`)
for (const [name, t] of times) console.log(`| ${name} | ${median(t).toFixed(1)} |`)
