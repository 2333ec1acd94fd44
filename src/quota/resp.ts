import { Command } from 'ioredis'

export type Arg = string | number

/**
 * A command sent with its arguments as they are, and written cheaply when they are all ASCII, as
 * the gateway's script calls nearly always are (key names, numbers, request ids).
 *
 * - Made empty and given its arguments after: ioredis's constructor copies them with
 *   Array.prototype.flat, about 180 ns per argument on Node 20. Nothing else happens to arguments
 *   there without ioredis's `keyPrefix`, which the gateway never sets (its keys carry their own
 *   prefix). They stay readable (cluster slots, debug output) as the strings ioredis would make.
 * - Written as one string with each argument's length in characters, then checked with one
 *   `Buffer.byteLength` of the whole: equal only when every character is ASCII, where characters
 *   and bytes agree. ioredis calls `Buffer.byteLength` once per argument, and the socket then
 *   flattens the longer rope that makes; for a batched script call of some 350 arguments that
 *   took 59 µs against 22 (docs/benchmarks.md). Anything else (a team or model name in another
 *   script) goes ioredis's own way.
 */
export class ScriptCommand extends Command {
  constructor(name: string, args: Arg[]) {
    super(name, [], { replyEncoding: 'utf8' })
    for (let i = 0; i < args.length; i++) if (typeof args[i] !== 'string') args[i] = String(args[i])
    this.args = args
  }

  override toWritable(socket: object): string | Buffer {
    const args = this.args as string[]
    let s = `*${args.length + 1}\r\n$${this.name.length}\r\n${this.name}\r\n`
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!
      s += `$${a.length}\r\n${a}\r\n`
    }
    return Buffer.byteLength(s) === s.length ? s : super.toWritable(socket)
  }
}
