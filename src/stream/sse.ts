/**
 * Byte-level Server-Sent Events splitting. No decoding, no re-encoding: events come out as the
 * exact bytes that went in, so a stream can be passed on unchanged or with whole events removed.
 */

const LF = 0x0a
const CR = 0x0d

/** Index just past the first event terminator (a blank line) at or after `from`, or -1. */
export function findEventEnd(buf: Buffer, from: number): number {
  for (let i = buf.indexOf(LF, from); i !== -1; i = buf.indexOf(LF, i + 1)) {
    // "\n\n" or "\n\r\n"
    if (buf[i + 1] === LF) return i + 2
    if (buf[i + 1] === CR && buf[i + 2] === LF) return i + 3
  }
  return -1
}

/**
 * Collects bytes and hands out complete events (each including its terminating blank line), in
 * time linear in the bytes: an unterminated event's chunks wait in a list and are joined once,
 * when its end arrives (joining them on every chunk made a 20 MB event take 25 s).
 */
export class SseSplitter {
  private chunks: Buffer[] = []
  private size = 0
  /** The last two bytes held, for a terminator split across chunks. */
  private tail1 = -1
  private tail2 = -1

  push(chunk: Buffer): Buffer[] {
    if (chunk.length === 0) return []
    const events: Buffer[] = []
    let buf = chunk
    let from = 0
    if (this.size > 0) {
      let end = findEventEnd(chunk, 0)
      // A terminator that straddles: "\n|\n", "\n|\r\n", "\n\r|\n".
      if (this.tail1 === LF && chunk[0] === LF) end = 1
      else if (this.tail1 === LF && chunk[0] === CR && chunk[1] === LF) end = 2
      else if (this.tail2 === LF && this.tail1 === CR && chunk[0] === LF) end = 1
      if (end === -1) {
        this.hold(chunk)
        return events
      }
      // The held event is complete: its chunks are joined once.
      buf = Buffer.concat([...this.chunks, chunk], this.size + chunk.length)
      events.push(buf.subarray(0, this.size + end))
      from = this.size + end
      this.chunks = []
      this.size = 0
    }
    for (let end = findEventEnd(buf, from); end !== -1; end = findEventEnd(buf, from)) {
      events.push(buf.subarray(from, end))
      from = end
    }
    if (from < buf.length) this.hold(buf.subarray(from))
    return events
  }

  private hold(bytes: Buffer): void {
    this.chunks.push(bytes)
    this.size += bytes.length
    this.tail2 = bytes.length >= 2 ? bytes[bytes.length - 2]! : this.tail1
    this.tail1 = bytes[bytes.length - 1]!
  }

  /** How many bytes of an event not (yet) terminated are held. */
  get pending(): number {
    return this.size
  }

  /** Bytes of an event not (yet) terminated. */
  rest(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size)
  }
}

export const USAGE_KEY = Buffer.from('"usage"')

/** True when the event carries a usage object (not `"usage":null`). */
export function hasUsageObject(event: Buffer): boolean {
  for (let i = event.indexOf(USAGE_KEY); i !== -1; i = event.indexOf(USAGE_KEY, i + 1)) {
    let j = i + USAGE_KEY.length
    while (event[j] === 0x20 || event[j] === 0x3a) j++ // spaces and the colon
    if (event[j] === 0x7b) return true // {
  }
  return false
}

/** The JSON of an event's data lines (`data: {…}`), or undefined. */
export function eventData(event: Buffer): unknown {
  const text = event.toString('utf8')
  const data = text
    .split(/\r?\n/)
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(5).replace(/^ /, ''))
    .join('\n')
  if (!data || data === '[DONE]') return undefined
  try {
    return JSON.parse(data)
  } catch {
    return undefined
  }
}

const TEXT_KEYS = ['"content":"', '"text":"', '"reasoning_content":"', '"reasoning":"', '"arguments":"'].map((k) => Buffer.from(k))
const QUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * The generated text of an event, without parsing its JSON: the raw (still escaped) bytes of each
 * text-bearing string field. Decoded only if they are ever needed, for an estimate.
 */
export function textSlices(event: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (const key of TEXT_KEYS) {
    for (let i = event.indexOf(key); i !== -1; i = event.indexOf(key, i + 1)) {
      const start = i + key.length
      let j = start
      while (j < event.length && event[j] !== QUOTE) j += event[j] === BACKSLASH ? 2 : 1
      if (j > start) out.push(event.subarray(start, j))
    }
  }
  return out
}

/** Decodes escaped JSON string bytes collected by textSlices. */
export function decodeSlices(slices: Buffer[]): string {
  let text = ''
  for (const slice of slices) {
    try {
      text += JSON.parse(`"${slice.toString('utf8')}"`) as string
    } catch {
      text += slice.toString('utf8')
    }
  }
  return text
}
