/**
 * What estimating a chat prompt costs the gateway (the reservation made before the call, when a
 * team has a token limit), turn by turn through an agent-style conversation: a long system prompt
 * sent with every request, and the whole conversation sent again each turn. Side by side in one
 * run, alternating: counting every text of the prompt (what the gateway did before it remembered
 * counts), and the gateway's `estimatePromptTokens` (counts remembered by each text's SHA-256;
 * these prompts are counted within its first slice, so it answers a number, not a promise).
 *
 *   cd bench && node --import tsx prompt-tokens.ts        (BENCH_SYSTEM_KB=16, BENCH_TURNS=30, BENCH_ROUNDS=5)
 */
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { estimatePromptTokens } from '../src/usage/estimate.js'
import { median } from './lib.js'

const BENCH_SYSTEM_KB = Number(process.env.BENCH_SYSTEM_KB ?? 16)
const BENCH_TURNS = Number(process.env.BENCH_TURNS ?? 30)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)

const sentence = 'Follow the operator’s rules, cite the documents you used, and answer in the language of the question. '
const turnText = (round: number, turn: number) =>
  `Round ${round}, turn ${turn}: ${'please look up the next record in the ledger and summarise what changed since the last one; '.repeat(5)}`

type Message = { role: string; content: string }
const countAll = (messages: Message[]) => 3 + messages.reduce((sum, m) => sum + 4 + countTokens(m.content), 0)
const micros = (f: () => number): [number, number] => {
  const t = process.hrtime.bigint()
  const n = f()
  return [n, Number(process.hrtime.bigint() - t) / 1000]
}

const all: number[] = []
const remembered: number[] = []
for (let round = 0; round < ROUNDS; round++) {
  // A system prompt of this round (the first request of each round counts it afresh).
  const system = `Round ${round}. ${sentence.repeat(Math.ceil((BENCH_SYSTEM_KB * 1024) / sentence.length))}`.slice(
    0,
    BENCH_SYSTEM_KB * 1024,
  )
  const messages: Message[] = [{ role: 'system', content: system }]
  for (let turn = 0; turn < BENCH_TURNS; turn++) {
    messages.push({ role: turn % 2 ? 'assistant' : 'user', content: turnText(round, turn) })
    const pair =
      turn % 2 === 0
        ? [micros(() => countAll(messages)), micros(() => estimatePromptTokens('chat', { messages }) as number)]
        : [micros(() => estimatePromptTokens('chat', { messages }) as number), micros(() => countAll(messages))].reverse()
    const [[a, ta], [b, tb]] = pair as [[number, number], [number, number]]
    if (a !== b) throw new Error(`estimates differ: ${a} vs ${b}`)
    all.push(ta)
    remembered.push(tb)
  }
}
const ratios = all.map((t, i) => remembered[i]! / t)
console.log(
  `prompt estimate per request: system prompt ${BENCH_SYSTEM_KB} KB, ${BENCH_TURNS} turns, ${ROUNDS} rounds (medians over ${all.length} requests)`,
)
console.log('| way | µs per request | vs counting every text |')
console.log('| --- | --- | --- |')
console.log(`| counting every text | ${median(all).toFixed(1)} | 1.000 |`)
console.log(`| estimatePromptTokens (counts remembered) | ${median(remembered).toFixed(1)} | ${median(ratios).toFixed(3)} |`)
