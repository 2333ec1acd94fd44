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
  private readonly slices: Buffer[] = []

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
      this.slices.push(...textSlices(event))
      return false
    }
    const data = eventData(event) as { usage?: Usage; choices?: unknown[] } | undefined
    if (data?.usage && typeof data.usage.total_tokens === 'number') this.usage = data.usage
    const usageOnly = Array.isArray(data?.choices) && data.choices.length === 0
    if (!usageOnly) this.slices.push(...textSlices(event))
    return usageOnly
  }

  /** The text generated so far, for an estimate when no usage came. */
  generatedText(): string {
    return decodeSlices(this.slices)
  }
}

/**
 * The usage object of a whole JSON answer, found without parsing the rest of it (answers can be
 * large; usage sits near the end): the last `"usage": {…}`, brace-matched, parsed alone.
 */
export function usageFromJson(body: Buffer): Usage | null {
  const at = body.lastIndexOf(USAGE_KEY)
  if (at < 0) return null
  const open = body.indexOf(0x7b, at + USAGE_KEY.length) // {
  if (open < 0) return null
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
  try {
    const u = JSON.parse(body.subarray(open, end).toString('utf8')) as Partial<Usage>
    if (typeof u.prompt_tokens !== 'number') return null
    const completion = typeof u.completion_tokens === 'number' ? u.completion_tokens : 0
    return { prompt_tokens: u.prompt_tokens, completion_tokens: completion, total_tokens: typeof u.total_tokens === 'number' ? u.total_tokens : u.prompt_tokens + completion }
  } catch {
    return null
  }
}
