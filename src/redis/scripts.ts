import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Command, type Cluster, type Redis } from 'ioredis'

/**
 * The gateway's Lua scripts (src/redis/lua), each loaded here and nowhere else: the directory's,
 * the quotas', the key pools' and the audit stream's.
 */
export type ScriptName =
  | 'create_team'
  | 'update_team'
  | 'delete_team'
  | 'create_key'
  | 'revoke_key'
  | 'update_key'
  | 'authenticate'
  | 'touch_keys'
  | 'admit'
  | 'settle'
  | 'audit'
  | 'pick_key'
  | 'key_states'

export type Arg = string | number

/** Each script's source and SHA1, read once per process. */
const sources = new Map<ScriptName, { lua: string; sha: string }>()

function source(name: ScriptName): { lua: string; sha: string } {
  let found = sources.get(name)
  if (found === undefined) {
    const lua = readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8')
    found = { lua, sha: createHash('sha1').update(lua).digest('hex') }
    sources.set(name, found)
  }
  return found
}

/**
 * A command from an argument list that is flat already. ioredis copies every command's arguments
 * with Array.prototype.flat, which on Node 20 costs about 180 ns per argument: 6 µs for a script
 * call with 33 of them (bench/script-encoding.ts). So the command is made empty and given its arguments
 * after, as strings (what ioredis would have made of them). Without ioredis's `keyPrefix`, which
 * the gateway never sets (its keys carry their own prefix), nothing else happens to them there.
 * (A subclass doing the same in its constructor was as slow as flat: V8.)
 */
export function flatCommand(name: string, args: Arg[]): Command {
  const command = new Command(name, [], { replyEncoding: 'utf8' })
  for (let i = 0; i < args.length; i++) if (typeof args[i] !== 'string') args[i] = String(args[i])
  command.args = args
  return command
}

/** One of the gateway's Lua scripts, sent by its SHA1, and by its source should Redis have lost it. */
export class LuaScript {
  private readonly lua: string
  private readonly sha: string

  constructor(
    private readonly client: Redis | Cluster,
    name: ScriptName,
  ) {
    ;({ lua: this.lua, sha: this.sha } = source(name))
  }

  /** Runs the script with these KEYS and ARGV. */
  run(keys: string[], args: Arg[]): Promise<unknown> {
    return this.send('evalsha', this.sha, keys, args).catch((err: unknown) => {
      // A Redis that lost its scripts (restarted, SCRIPT FLUSH): send the source once more.
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err
      return this.send('eval', this.lua, keys, args)
    })
  }

  private send(name: string, script: string, keys: string[], args: Arg[]): Promise<unknown> {
    const command = flatCommand(name, [script, keys.length, ...keys, ...args])
    void this.client.sendCommand(command)
    return command.promise
  }
}

/** Every script of a client, by name (what the store and the key pool call). */
export function scripts<N extends ScriptName>(client: Redis | Cluster, names: readonly N[]): Record<N, LuaScript> {
  const out = {} as Record<N, LuaScript>
  for (const name of names) out[name] = new LuaScript(client, name)
  return out
}
