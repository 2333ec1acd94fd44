import { Transform, type TransformCallback } from 'node:stream'
import type { Usage } from '../quota/types.js'
import { decodeSlices, eventData, hasUsageObject, SseSplitter, textSlices, USAGE_KEY } from './sse.js'

/**
 * Watches an upstream SSE stream for its usage and its text, changing nothing, except in `strip`
 * mode: there the gateway itself asked for usage (stream_options.include_usage) and removes
 * exactly that one usage-only event, so the client gets the stream it asked for.
 *
 * `observe` passes every chunk on the moment it arrives. `strip` passes each event on as soon as it
 * is complete (a partial event is held until its end arrives, which an SSE client needs anyway).
 */
export class UsageTap extends Transform {
  usage: Usage | null = null
  private readonly splitter = new SseSplitter()
  /**
   * The events with generated text, kept as they came. Their text is found only if an estimate is
   * ever needed (a stream that ends without its usage): looking for five text fields in every event
   * as it passed cost about a tenth of a stream's CPU in the gateway (docs/benchmarks.md). They point
   * into the same buffers the text slices did; events without text (a role, a comment) are kept now
   * too, each a few hundred bytes at most.
   */
  private readonly events: Buffer[] = []

  constructor(private readonly mode: 'observe' | 'strip') {
    super()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.mode === 'observe') this.push(chunk)
    for (const event of this.splitter.push(chunk)) {
      const drop = this.inspect(event)
      if (this.mode === 'strip' && !drop) this.push(event)
    }
    callback()
  }

  override _flush(callback: TransformCallback): void {
    const rest = this.splitter.rest()
    if (this.mode === 'strip' && rest.length > 0) this.push(rest)
    callback()
  }

  /** Records usage and text; true for a usage-only event (no choices) that strip mode removes. */
  private inspect(event: Buffer): boolean {
    if (!hasUsageObject(event)) {
      this.events.push(event)
      return false
    }
    const data = eventData(event) as { usage?: Usage; choices?: unknown[] } | undefined
    if (data?.usage && typeof data.usage.total_tokens === 'number') this.usage = data.usage
    const usageOnly = Array.isArray(data?.choices) && data.choices.length === 0
    if (!usageOnly) this.events.push(event)
    return usageOnly
  }

  /** The text generated so far, for an estimate when no usage came. */
  generatedText(): string {
    return decodeSlices(this.events.flatMap(textSlices))
  }
}

/**
 * The usage object of a whole JSON answer, found without parsing the rest of it (answers can be
 * large; usage sits near the end): the last `"usage": {…}`, brace-matched, parsed alone.
 */
export function usageFromJson(body: Buffer): Usage | null {
  const at = body.lastIndexOf(USAGE_KEY)
  if (at < 0) return null
  // `"usage"`, a colon, then the object itself (not a later one: usage may be null).
  let open = at + USAGE_KEY.length
  while (open < body.length && (isBlank(body[open]) || body[open] === 0x3a)) open++
  if (body[open] !== 0x7b) return null // {
  let depth = 0
  let end = -1
  for (let i = open; i < body.length; i++) {
    if (body[i] === 0x7b) depth++
    else if (body[i] === 0x7d && --depth === 0) {
      end = i + 1
      break
    }
  }
  if (end < 0) return null
  // The usual shape (plain integers) is read straight from the bytes; anything else is parsed.
  const prompt = integerAfter(body, PROMPT, open, end)
  const completion = integerAfter(body, COMPLETION, open, end)
  const total = integerAfter(body, TOTAL, open, end)
  if (prompt !== null && completion !== null && total !== null) return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total }
  try {
    const u = JSON.parse(body.subarray(open, end).toString('utf8')) as Partial<Usage>
    if (typeof u.prompt_tokens !== 'number') return null
    const completion = typeof u.completion_tokens === 'number' ? u.completion_tokens : 0
    return { prompt_tokens: u.prompt_tokens, completion_tokens: completion, total_tokens: typeof u.total_tokens === 'number' ? u.total_tokens : u.prompt_tokens + completion }
  } catch {
    return null
  }
}

const isBlank = (b: number | undefined) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09

const PROMPT = Buffer.from('"prompt_tokens"')
const COMPLETION = Buffer.from('"completion_tokens"')
const TOTAL = Buffer.from('"total_tokens"')

/** The non-negative integer value of `"name"` in body[from, end), or null unless it is exactly that. */
function integerAfter(body: Buffer, name: Buffer, from: number, end: number): number | null {
  const at = body.indexOf(name, from)
  if (at < 0 || at >= end) return null
  let i = at + name.length
  while (i < end && isBlank(body[i])) i++
  if (body[i++] !== 0x3a) return null // :
  while (i < end && isBlank(body[i])) i++
  let value = 0
  const first = i
  for (; i < end && body[i]! >= 0x30 && body[i]! <= 0x39; i++) value = value * 10 + body[i]! - 0x30
  if (i === first || i - first > 15) return null
  const next = body[i]
  return next === 0x2c || next === 0x7d || isBlank(next) ? value : null // , } or blank
}
