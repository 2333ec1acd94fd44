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

/** Collects bytes and hands out complete events (each including its terminating blank line). */
export class SseSplitter {
  private pending: Buffer = Buffer.alloc(0)

  push(chunk: Buffer): Buffer[] {
    const buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    const events: Buffer[] = []
    let start = 0
    // Only the new bytes can complete an event; step back 2 in case a terminator straddles.
    let end = findEventEnd(buf, Math.max(0, this.pending.length - 2))
    while (end !== -1) {
      events.push(buf.subarray(start, end))
      start = end
      end = findEventEnd(buf, start)
    }
    this.pending = start === buf.length ? Buffer.alloc(0) : buf.subarray(start)
    return events
  }

  /** Bytes of an event not (yet) terminated. */
  rest(): Buffer {
    return this.pending
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
