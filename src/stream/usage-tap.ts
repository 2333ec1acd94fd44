import { Transform, type TransformCallback } from 'node:stream'
import { errorBody, ERRORS, type ErrorCode } from '../errors.js'
import type { Usage } from '../quota/types.js'
import { decodeSlices, eventData, hasUsageObject, SseSplitter, textSlices, USAGE_KEY } from './sse.js'

/** A usage report that is there but cannot be believed (negative, fractional, huge, not a number). */
export const INVALID = 'invalid'
export type Reported = Usage | typeof INVALID | null

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

/**
 * The upstream's usage object as the gateway counts it: non-negative safe integers, or INVALID.
 * (These figures reach metrics counters, quotas and reports: a negative one once crashed the
 * process in prom-client's Counter.inc.) An embeddings answer has no completion_tokens; a missing
 * total is the sum.
 */
export function checkUsage(u: unknown): Usage | typeof INVALID {
  if (typeof u !== 'object' || u === null) return INVALID
  const { prompt_tokens: prompt, completion_tokens: completion = 0, total_tokens: total } = u as Record<string, unknown>
  if (!isCount(prompt) || !isCount(completion) || (total !== undefined && !isCount(total))) return INVALID
  const sum = prompt + completion
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total ?? sum }
}

/** How a stream was cut short by the gateway's own limits. */
export interface StreamLimits {
  /** The most bytes one stream may carry. */
  maxBytes: number
  /** The longest one event may be (bytes before its blank line). */
  maxEventBytes: number
}

const DONE = Buffer.from('data: [DONE]')
/** `data: [DONE]` and its blank line, with room for a \r or two. */
const DONE_EVENT_MAX = 18

/** Bytes of events kept for an estimate, at most; the rest is counted by its length only. */
export const KEPT_FOR_ESTIMATE = 1024 * 1024

/**
 * Watches an upstream SSE stream for its usage and its text, changing nothing, except in `strip`
 * mode: there the gateway itself asked for usage (stream_options.include_usage) and removes
 * exactly that one usage-only event, so the client gets the stream it asked for.
 *
 * Each chunk's complete events go on the moment they arrive, as one piece; the bytes of an event
 * not yet complete wait for its end (an SSE client needs the whole event anyway). So the stream can
 * always be ended cleanly: past a limit, the client gets whatever events were complete and then an
 * SSE error event in OpenAI's shape, which the SDKs raise as an APIError.
 *
 * Memory is bounded: what an event holds is let go once it has passed, but for the first
 * KEPT_FOR_ESTIMATE bytes of events, kept for an estimate should no usage come.
 */
export class UsageTap extends Transform {
  /** The usage reported, INVALID if it could not be believed, null while none came. */
  usage: Reported = null
  /** Set when the gateway cut the stream, with the code it gave the client. */
  cutFor: ErrorCode | null = null
  private readonly splitter = new SseSplitter()
  /**
   * The first events, kept as they came: their text is found only if an estimate is ever needed
   * (a stream that ends without its usage). Looking for five text fields in every event as it
   * passed cost about a tenth of a stream's CPU in the gateway (bench/ab.ts, streams).
   */
  private readonly kept: Buffer[] = []
  private keptBytes = 0
  private sawDone = false
  /** Bytes of every event but the usage one: what the estimate scales the kept events' text to. */
  private eventBytes = 0
  private bytes = 0
  /** Called once, when the gateway cuts the stream (with the error's code and the status it counts as): the route stops reading the upstream. */
  onCut: ((code: ErrorCode, status: number) => void) | null = null
  /** Called once, when the `data: [DONE]` event has gone on: the answer is complete. */
  onDone: (() => void) | null = null
  /** Whether any bytes have gone on. */
  begun = false
  /**
   * Settles when the first bytes go out, or the stream ends without any; fails if the stream fails
   * before: until then the client can still get a plain error answer with its status.
   */
  readonly started: Promise<void>
  private start!: { resolve: () => void; reject: (err: Error) => void } | null

  constructor(
    private readonly mode: 'observe' | 'strip',
    private readonly limits: StreamLimits = { maxBytes: Number.POSITIVE_INFINITY, maxEventBytes: Number.POSITIVE_INFINITY },
  ) {
    super()
    this.started = new Promise((resolve, reject) => (this.start = { resolve, reject }))
    // (Awaited by the route; a tap nobody waits on must not leave an unhandled rejection.)
    this.started.catch(() => undefined)
    this.once('error', (err) => this.settleStart(err))
    this.once('close', () => this.settleStart(new Error('The stream closed before its first event.')))
  }

  override push(chunk: Buffer | null, encoding?: BufferEncoding): boolean {
    if (chunk !== null) this.begun = true
    this.settleStart(null)
    return super.push(chunk, encoding)
  }

  private settleStart(err: Error | null): void {
    if (this.start === null) return
    if (err === null) this.start.resolve()
    else this.start.reject(err)
    this.start = null
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.cutFor !== null) return callback()
    this.bytes += chunk.length
    const events = this.splitter.push(chunk)
    let pass: Buffer | null = null
    let passFrom = -1
    for (const event of events) {
      const drop = this.inspect(event)
      if (this.mode === 'strip' && drop) continue
      // Events found in one chunk lie one after the other: they go on as one piece.
      if (pass !== null && event.byteOffset === passFrom && event.buffer === pass.buffer) {
        pass = Buffer.from(pass.buffer, pass.byteOffset, pass.length + event.length)
      } else {
        if (pass !== null) this.push(pass)
        pass = event
      }
      passFrom = pass.byteOffset + pass.length
    }
    if (pass !== null) this.push(pass)
    if (this.sawDone && this.onDone !== null) {
      this.onDone()
      this.onDone = null
    }
    if (this.bytes > this.limits.maxBytes) {
      this.cut('stream_too_large', `The upstream's stream passed the gateway's limit of ${this.limits.maxBytes} bytes and was ended.`)
    } else if (this.splitter.pending > this.limits.maxEventBytes) {
      this.cut(
        'stream_event_too_large',
        `An event of the upstream's stream passed the gateway's limit of ${this.limits.maxEventBytes} bytes and the stream was ended.`,
      )
    }
    callback()
  }

  override _flush(callback: TransformCallback): void {
    // An unterminated tail is passed on as it came (the stream is byte-exact to its end).
    if (this.cutFor === null && this.splitter.pending > 0) this.push(this.splitter.rest())
    callback()
  }

  /**
   * Ends the stream for the client with an error event (after the events already complete), and
   * stops reading: what a limit does. Usage is then estimated from what was streamed.
   */
  cut(code: ErrorCode, message: string): void {
    if (this.cutFor !== null || this.writableEnded) return
    this.cutFor = code
    this.push(errorEvent(code, message))
    this.onCut?.(code, ERRORS[code].status)
    this.end()
  }

  /** Records usage and keeps text; true for a usage-only event (no choices) that strip mode removes. */
  private inspect(event: Buffer): boolean {
    if (!hasUsageObject(event)) {
      if (event.length <= DONE_EVENT_MAX && event.includes(DONE)) this.sawDone = true
      this.keep(event)
      return false
    }
    const data = eventData(event) as { usage?: unknown; choices?: unknown[] } | undefined
    if (data?.usage !== undefined && data.usage !== null) this.usage = checkUsage(data.usage)
    const usageOnly = Array.isArray(data?.choices) && data.choices.length === 0
    if (!usageOnly) this.keep(event)
    return usageOnly
  }

  private keep(event: Buffer): void {
    this.eventBytes += event.length
    if (this.keptBytes + event.length > KEPT_FOR_ESTIMATE) return
    this.kept.push(event)
    this.keptBytes += event.length
  }

  /**
   * What an estimate counts when no usage came: the text of the kept events, and the share of all
   * events they are (the estimate scales their count by it).
   */
  generated(): { text: string; scale: number } {
    return { text: decodeSlices(this.kept.flatMap(textSlices)), scale: this.keptBytes === 0 ? 1 : this.eventBytes / this.keptBytes }
  }

  /** The text generated so far (all of it while the stream is within KEPT_FOR_ESTIMATE). */
  generatedText(): string {
    return this.generated().text
  }
}

/** An SSE event carrying an error in OpenAI's envelope: `data: {"error":{…}}`. */
export function errorEvent(code: ErrorCode, message: string): Buffer {
  return Buffer.from(`data: ${JSON.stringify(errorBody(code, message))}\n\n`)
}

/**
 * The usage object of a whole JSON answer, found without parsing the rest of it (answers can be
 * large; usage sits near the end): the last `"usage": {…}`, brace-matched, parsed alone.
 */
export function usageFromJson(body: Buffer): Reported {
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
  if (prompt !== null && completion !== null && total !== null)
    return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total }
  try {
    return checkUsage(JSON.parse(body.subarray(open, end).toString('utf8')))
  } catch {
    return INVALID
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
