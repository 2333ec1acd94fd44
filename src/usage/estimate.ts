import { hash } from 'node:crypto'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { countTokens, setMergeCacheSize } from 'gpt-tokenizer/encoding/o200k_base'
import { LRUCache } from 'lru-cache'

/**
 * Token estimates, for reservations before the call and for usage the upstream never reported.
 * MiniMax and most NVIDIA-hosted models use their own tokenizers, which no JavaScript library
 * ships; o200k_base (gpt-tokenizer) is a close, maintained stand-in. Reservations are settled to
 * the upstream's real usage whenever it reports one.
 *
 * Counting is bounded, because any client chooses what is counted:
 * - BPE is quadratic in the length of one pre-tokenized piece (a 40,000-character word took
 *   1.7 s), so text goes to the tokenizer in segments cut where a piece starts anyway (a space
 *   after a non-space), and a run of MAX_RUN characters of one kind (letters, digits, punctuation,
 *   spaces: what a piece is made of) is cut too;
 * - counting costs up to ~1 µs a character (random words), so one request's texts are counted
 *   exactly up to EXACT_COUNT_CHARS, and each UTF-8 byte past that is taken as one token: an upper
 *   bound, since every o200k token is at least one byte, so a reservation stays one;
 * - counting that takes longer than SLICE_MS goes on in slices of that length, with a turn of the
 *   event loop between them, so no request holds up the others while its prompt is counted.
 * bench/hostile.ts measures the event loop's delay while such prompts are counted.
 */

/** Tokens a chat message costs beyond its text, as OpenAI counts them. */
const PER_MESSAGE = 4
const PER_REPLY = 3

/** The longest run of characters of one kind the tokenizer sees (a multiple of 3: digits go in threes). */
export const MAX_RUN = 96
/** At most this much text goes to the tokenizer in one call. */
const SEGMENT = 4096
/** Characters of one request counted exactly; each byte past them counts as a token. */
export const EXACT_COUNT_CHARS = 1 << 20
/** The longest the tokenizer runs before the event loop gets a turn. */
const SLICE_MS = 5

// gpt-tokenizer's own merge cache evicts by iterating a Map it deletes from, which slows to a crawl
// on text with many distinct words (1 MB of random words: 0.9 s, then 6 s); without it, 0.8 s.
setMergeCacheSize(0)

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff
/** The kind of character a pre-tokenized piece is a run of: space, digit, letter (any non-ASCII too), punctuation. */
function kind(c: number): number {
  if (c <= 0x20) return 0
  if (c >= 0x30 && c <= 0x39) return 1
  if ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) return 2
  return c >= 0x80 ? 2 : 3
}

/**
 * Where the segment starting at `from` ends, within SEGMENT characters: where o200k's
 * pre-tokenizer starts a piece anyway, so the count is the same as the whole text's (the last
 * space after a non-space, else a digit after a non-digit, or an ASCII letter after two
 * punctuation marks, as in JSON); or after MAX_RUN characters of one kind.
 */
export function segmentEnd(text: string, from: number): number {
  const limit = Math.min(text.length, from + SEGMENT)
  let cut = -1
  let fallback = -1
  let run = 0
  let last = -1
  let before = -1
  for (let i = from; i < limit; i++) {
    const c = text.charCodeAt(i)
    const k = kind(c)
    if (i > from) {
      if (c === 0x20 && last !== 0) cut = i
      else if ((k === 1 && last !== 1) || (k === 2 && c < 0x80 && last === 3 && before === 3)) fallback = i
    }
    run = k === last ? run + 1 : 1
    before = last
    last = k
    if (run >= MAX_RUN && !isHighSurrogate(c)) return i + 1
  }
  if (cut === -1) cut = fallback
  if (limit === text.length || cut === -1) return limit > from + 1 && isHighSurrogate(text.charCodeAt(limit - 1)) ? limit - 1 : limit
  return cut
}

/**
 * Token counts of prompt texts, by each text's SHA-256 (no prompt is kept). Chat clients send the
 * whole conversation again every turn, and the same system prompt with every request, so most of
 * a prompt has been counted before (bench/prompt-tokens.ts). Only exact counts are kept.
 */
const promptCounts = new LRUCache<string, number>({ max: 20_000 })

/** Counts a list of texts within one budget, segment by segment, resuming where it stopped. */
class Counting {
  total = 0
  private index = 0
  private pos = 0
  private current = 0
  private key = ''
  private budget = EXACT_COUNT_CHARS

  constructor(
    private readonly texts: readonly string[],
    private readonly remember: boolean,
  ) {}

  /** Counts until every text is counted (true) or the deadline passed (false: call again). */
  run(deadline: number): boolean {
    for (; this.index < this.texts.length; this.index++, this.pos = 0, this.current = 0) {
      const text = this.texts[this.index]!
      if (text.length === 0) continue
      // (A text longer than the budget is never counted exactly: not worth hashing.)
      const remember = this.remember && text.length <= EXACT_COUNT_CHARS
      if (this.pos === 0 && remember) {
        this.key = hash('sha256', text, 'base64')
        const known = promptCounts.get(this.key)
        if (known !== undefined) {
          this.total += known
          continue
        }
      }
      let exact = true
      while (this.pos < text.length) {
        if (this.budget <= 0) {
          this.current += Buffer.byteLength(this.pos === 0 ? text : text.slice(this.pos))
          this.pos = text.length
          exact = false
          break
        }
        const end = segmentEnd(text, this.pos)
        this.current += countTokens(text.slice(this.pos, end))
        this.budget -= end - this.pos
        this.pos = end
        if (this.pos < text.length && performance.now() > deadline) return false
      }
      // (A text cut by the budget has an upper bound, not its count: not remembered.)
      if (remember && exact) promptCounts.set(this.key, this.current)
      this.total += this.current
    }
    return true
  }
}

/**
 * The tokens of the texts: at once when that takes less than SLICE_MS (nearly always: most texts
 * were counted before), else a promise, counted in slices between turns of the event loop.
 */
export function countTexts(texts: readonly string[], remember = true): number | Promise<number> {
  const counting = new Counting(texts, remember)
  if (counting.run(performance.now() + SLICE_MS)) return counting.total
  return (async () => {
    do await nextTurn()
    while (!counting.run(performance.now() + SLICE_MS))
    return counting.total
  })()
}

/** One text's tokens, the same way (tests and the bench compare this with gpt-tokenizer's own count). */
export const countText = (text: string): number | Promise<number> => countTexts([text], false)

function textOf(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content
      .map((part) =>
        typeof part === 'object' && part !== null && typeof (part as { text?: unknown }).text === 'string'
          ? (part as { text: string }).text
          : '',
      )
      .join('')
  }
  return ''
}

/** A prompt's texts, and the tokens it costs beyond them. */
function promptParts(endpoint: string, body: Record<string, unknown>): { texts: string[]; extra: number } {
  const texts: string[] = []
  if (endpoint === 'chat') {
    const messages = body.messages as unknown[]
    for (const message of messages) {
      const m = (message ?? {}) as Record<string, unknown>
      texts.push(textOf(m.content))
      if (typeof m.name === 'string') texts.push(m.name)
      if (m.tool_calls !== undefined) texts.push(JSON.stringify(m.tool_calls) ?? '')
    }
    if (body.tools !== undefined) texts.push(JSON.stringify(body.tools) ?? '')
    return { texts, extra: PER_REPLY + PER_MESSAGE * messages.length }
  }
  const input = endpoint === 'completions' ? body.prompt : body.input
  let extra = 0
  for (const item of Array.isArray(input) ? input : [input]) {
    if (typeof item === 'string') texts.push(item)
    else if (typeof item === 'number')
      extra += 1 // a token id
    else if (Array.isArray(item)) extra += item.length // a list of token ids
  }
  return { texts, extra }
}

/** The prompt's tokens, by endpoint: a number when counted at once, else a promise of it. */
export function estimatePromptTokens(endpoint: string, body: Record<string, unknown>): number | Promise<number> {
  const { texts, extra } = promptParts(endpoint, body)
  const counted = countTexts(texts)
  return typeof counted === 'number' ? counted + extra : counted.then((n) => n + extra)
}

/**
 * What to reserve at admission: the prompt plus the most the answer may use, as sent upstream
 * (after defaults), for each of `n` choices.
 */
export function reservationTokens(
  endpoint: string,
  upstreamBody: Record<string, unknown>,
  promptTokens: number,
  fallbackCompletion: number,
): number {
  if (endpoint === 'embeddings') return promptTokens
  const max = upstreamBody.max_tokens ?? upstreamBody.max_completion_tokens
  const completion = typeof max === 'number' && max >= 0 ? max : fallbackCompletion
  const n = typeof upstreamBody.n === 'number' && upstreamBody.n > 1 ? upstreamBody.n : 1
  return promptTokens + completion * n
}
