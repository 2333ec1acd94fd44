import { describe, expect, it } from 'vitest'
import { decodeSlices, eventData, hasUsageObject, SseSplitter, textSlices } from '../../src/stream/sse.js'
import { UsageTap } from '../../src/stream/usage-tap.js'

const stream = Buffer.from(
  [
    'data: {"choices":[{"delta":{"content":"Grüße, 你好 🙂 \\"quoted\\" \\\\ \\n"}}],"usage":null}\n\n',
    ': keep-alive\n\n',
    'data: {"choices":[{"delta":{"reasoning_content":"thinking…"}}],"usage":null}\r\n\r\n',
    'data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\\"city\\":\\"Zürich\\"}"}}]}}],"usage":null}\n\n',
    'data: {"choices":[],"usage": {"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}\n\n',
    'data: [DONE]\n\n',
  ].join(''),
  'utf8',
)

/** Deterministic pseudo-random cut points, so failures reproduce. */
function* cuts(seed: number, length: number): Generator<number> {
  let x = seed
  let at = 0
  while (at < length) {
    x = (x * 1_103_515_245 + 12_345) % 2 ** 31
    at += 1 + (x % 17)
    yield Math.min(at, length)
  }
}

function chunked(buf: Buffer, seed: number): Buffer[] {
  const out: Buffer[] = []
  let from = 0
  for (const to of cuts(seed, buf.length)) {
    out.push(buf.subarray(from, to))
    from = to
  }
  return out
}

describe('SseSplitter', () => {
  it('finds the same six events however the bytes are cut, and loses none', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const splitter = new SseSplitter()
      const events = chunked(stream, seed).flatMap((c) => splitter.push(c))
      expect(events).toHaveLength(6)
      expect(Buffer.concat(events).equals(stream)).toBe(true)
      expect(splitter.rest()).toHaveLength(0)
    }
  })

  it('keeps an unterminated tail as rest', () => {
    const splitter = new SseSplitter()
    expect(splitter.push(Buffer.from('data: 1\n\ndata: 2\n'))).toHaveLength(1)
    expect(splitter.rest().toString()).toBe('data: 2\n')
  })
})

describe('event inspection', () => {
  it('tells a usage object from usage:null', () => {
    expect(hasUsageObject(Buffer.from('data: {"usage":null}\n\n'))).toBe(false)
    expect(hasUsageObject(Buffer.from('data: {"usage": {"total_tokens":1}}\n\n'))).toBe(true)
    expect(hasUsageObject(Buffer.from('data: {"x":"\\"usage\\""}\n\n'))).toBe(false)
  })

  it('reads the JSON of data lines, and nothing of [DONE] or comments', () => {
    expect(eventData(Buffer.from('data: {"a":1}\n\n'))).toEqual({ a: 1 })
    expect(eventData(Buffer.from('data: [DONE]\n\n'))).toBeUndefined()
    expect(eventData(Buffer.from(': keep-alive\n\n'))).toBeUndefined()
  })

  it('collects generated text without parsing JSON, escapes and all', () => {
    const splitter = new SseSplitter()
    const slices = splitter.push(stream).flatMap(textSlices)
    expect(decodeSlices(slices)).toBe('Grüße, 你好 🙂 "quoted" \\ \nthinking…{"city":"Zürich"}')
  })
})

describe('UsageTap', () => {
  async function run(mode: 'observe' | 'strip', seed: number) {
    const tap = new UsageTap(mode)
    const out: Buffer[] = []
    tap.on('data', (c: Buffer) => out.push(c))
    for (const c of chunked(stream, seed)) tap.write(c)
    tap.end()
    await new Promise((r) => tap.on('end', r))
    return { tap, bytes: Buffer.concat(out) }
  }

  it('observe: every byte passes unchanged, and the usage is read', async () => {
    for (const seed of [3, 7, 11]) {
      const { tap, bytes } = await run('observe', seed)
      expect(bytes.equals(stream)).toBe(true)
      expect(tap.usage).toEqual({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 })
    }
  })

  it('strip: exactly the usage-only event is gone', async () => {
    for (const seed of [3, 7, 11]) {
      const { tap, bytes } = await run('strip', seed)
      const expected = stream.toString('utf8').replace('data: {"choices":[],"usage": {"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}\n\n', '')
      expect(bytes.toString('utf8')).toBe(expected)
      expect(tap.usage?.total_tokens).toBe(8)
    }
  })

  it('gives the generated text whole when asked, however the bytes were cut, in either mode', async () => {
    // What an estimate counts when no usage comes: every text field of every event, decoded.
    const text = 'Grüße, 你好 🙂 "quoted" \\ \n' + 'thinking…' + '{"city":"Zürich"}'
    for (const mode of ['observe', 'strip'] as const) {
      for (const seed of [3, 7, 11]) expect((await run(mode, seed)).tap.generatedText()).toBe(text)
    }
  })

  it('strip never removes an event that also carries choices', async () => {
    const tap = new UsageTap('strip')
    const event = 'data: {"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
    const out: Buffer[] = []
    tap.on('data', (c: Buffer) => out.push(c))
    tap.end(Buffer.from(event))
    await new Promise((r) => tap.on('end', r))
    expect(Buffer.concat(out).toString()).toBe(event)
    expect(tap.usage?.total_tokens).toBe(2)
  })
})
