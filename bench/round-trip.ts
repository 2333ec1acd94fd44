/**
 * What one round trip to Redis costs the process that makes it, and how much of that is the client
 * library: sequential script calls (a script that returns at once, so Redis's own work is nil), made
 * the gateway's way (ioredis, a command from flatCommand, as src/quota/scripts.ts sends them) and
 * through a bare socket with the RESP written by hand (the floor of any client), in alternating
 * rounds. Prints, per way and argument count, the median over rounds of the CPU per call (user and
 * system, from process.cpuUsage) and of the wall time per call.
 *
 * Then the write alone: how long the socket write of one PING holds the caller (the system call
 * returns only after the kernel has handed the bytes to Redis's socket and woken Redis), by what
 * came before it: the previous reply just in, this process busy computing for half a millisecond
 * (as a gateway is between a request's admission and its settlement), or asleep for two.
 *
 *   npx tsx bench/round-trip.ts          (from the repository root; starts its own redis-server)
 *   RT_N=20000 RT_ROUNDS=5 …
 */
import { connect, type Socket } from 'node:net'
import { Redis } from 'ioredis'
import { flatCommand } from '../src/redis/scripts.js'
import { startRedis } from '../test/helpers/redis.js'
import { median } from './lib.js'

const N = Number(process.env.RT_N ?? 20_000)
const ROUNDS = Number(process.env.RT_ROUNDS ?? 5)
/** Arguments per call: none, and about what a lone admission sends. */
const SIZES = [0, 30]

const server = await startRedis()
const client = new Redis(server.url)
const socket: Socket = connect(Number(new URL(server.url).port), '127.0.0.1')
try {
  await new Promise((resolve) => socket.once('connect', resolve))
  const sha = (await client.script('LOAD', 'return 1')) as string
  const argsOf = (n: number) => Array.from({ length: n }, (_, i) => `tg:{t:bench}:team:arg${i}`)

  const viaIoredis = async (args: string[]) => {
    const command = flatCommand('evalsha', [sha, 0, ...args])
    void client.sendCommand(command)
    await command.promise
  }
  const viaSocket = async (args: string[]) => {
    const all = ['evalsha', sha, '0', ...args]
    let resp = `*${all.length}\r\n`
    for (const a of all) resp += `$${Buffer.byteLength(a)}\r\n${a}\r\n`
    const reply = new Promise((resolve) => socket.once('data', resolve))
    socket.write(resp)
    await reply // ":1\r\n" arrives in one read
  }
  const ways: [string, (args: string[]) => Promise<void>][] = [
    ['ioredis (the gateway’s way)', viaIoredis],
    ['bare socket, RESP by hand', viaSocket],
  ]

  const results = new Map<string, { user: number[]; system: number[]; wall: number[] }>()
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, call] of round % 2 === 0 ? ways : [...ways].reverse()) {
      for (const size of SIZES) {
        const args = argsOf(size)
        for (let i = 0; i < 500; i++) await call(args) // warm
        const cpu = process.cpuUsage()
        const started = performance.now()
        for (let i = 0; i < N; i++) await call(args)
        const wall = ((performance.now() - started) * 1000) / N
        const used = process.cpuUsage(cpu)
        const key = `${name} | ${size}`
        const r = results.get(key) ?? { user: [], system: [], wall: [] }
        r.user.push(used.user / N)
        r.system.push(used.system / N)
        r.wall.push(wall)
        results.set(key, r)
      }
    }
  }
  const writeTimes = new Map<string, number[]>()
  const before: [string, () => Promise<void> | void][] = [
    ['the previous reply just in', () => {}],
    [
      '0.5 ms of computing',
      () => {
        const until = performance.now() + 0.5
        while (performance.now() < until);
      },
    ],
    ['2 ms asleep', () => new Promise((resolve) => setTimeout(resolve, 2))],
  ]
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, gap] of before) {
      const times: number[] = []
      for (let i = 0; i < 2000; i++) {
        await gap()
        const reply = new Promise((resolve) => socket.once('data', resolve))
        const started = performance.now()
        socket.write('*1\r\n$4\r\nPING\r\n')
        times.push((performance.now() - started) * 1000)
        await reply
      }
      writeTimes.set(name, [...(writeTimes.get(name) ?? []), median(times)])
    }
  }

  console.log(`one call at a time, ${N} calls per round, medians of ${ROUNDS} rounds`)
  console.log('| way | arguments | CPU µs/call | of which system | wall µs/call |\n| --- | --- | --- | --- | --- |')
  for (const [key, r] of results) {
    const user = median(r.user)
    const system = median(r.system)
    console.log(`| ${key} | ${(user + system).toFixed(1)} | ${system.toFixed(1)} | ${median(r.wall).toFixed(1)} |`)
  }
  console.log(`\nthe socket write of one PING (bare socket), median of ${ROUNDS} rounds of 2000`)
  console.log('| before the write | µs in the write |\n| --- | --- |')
  for (const [name, times] of writeTimes) console.log(`| ${name} | ${median(times).toFixed(1)} |`)
} finally {
  socket.destroy()
  client.disconnect()
  await server.stop()
}
