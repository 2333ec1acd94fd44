import { describe, expect, it } from 'vitest'
import { decodeSlices, eventData, hasUsageObject, SseSplitter, textSlices } from '../../src/stream/sse.js'
import { checkUsage, errorEvent, INVALID, KEPT_FOR_ESTIMATE, UsageTap } from '../../src/stream/usage-tap.js'

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

  it('finds a blank line split across chunks in every way it can be', () => {
    for (const cut of ['\n|\n', '\n|\r\n', '\n\r|\n', '\n|\r|\n']) {
      const splitter = new SseSplitter()
      const parts = `data: 1${cut}data: 2\n\n`.split('|')
      const events = parts.flatMap((p) => splitter.push(Buffer.from(p)))
      expect({ cut, events: events.map(String) }).toEqual({ cut, events: [`data: 1${cut.replace(/\|/g, '')}`, 'data: 2\n\n'] })
    }
  })

  it('holds a long unterminated event as the chunks it came in, and joins them once, at its end', () => {
    const splitter = new SseSplitter()
    const piece = Buffer.alloc(64 * 1024, 'y')
    for (let i = 0; i < 320; i++) expect(splitter.push(piece)).toEqual([])
    expect(splitter.pending).toBe(320 * piece.length)
    const [event, ...more] = splitter.push(Buffer.from('\n\ndata: next'))
    expect(more).toEqual([])
    expect(event!.length).toBe(320 * piece.length + 2)
    expect(splitter.rest().toString()).toBe('data: next')
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
      const expected = stream
        .toString('utf8')
        .replace('data: {"choices":[],"usage": {"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}\n\n', '')
      expect(bytes.toString('utf8')).toBe(expected)
      expect(tap.usage).toEqual({ prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 })
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
    expect(tap.usage).toEqual({ prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 })
  })
})

describe('what the upstream reports as usage', () => {
  it.each([
    [
      { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
      { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
    ],
    [
      { prompt_tokens: 8, total_tokens: 8 },
      { prompt_tokens: 8, completion_tokens: 0, total_tokens: 8 },
    ],
    [
      { prompt_tokens: 4, completion_tokens: 6 },
      { prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 },
    ],
  ])('%j is believed', (reported, counted) => {
    expect(checkUsage(reported)).toEqual(counted)
  })

  it.each([
    { prompt_tokens: -500_000, completion_tokens: 5, total_tokens: 5 },
    { prompt_tokens: Infinity, completion_tokens: 5, total_tokens: 5 },
    { prompt_tokens: 'abc', completion_tokens: 5 },
    { prompt_tokens: 2.5, completion_tokens: 5 },
    { prompt_tokens: 2 ** 53, completion_tokens: 5 },
    { prompt_tokens: 1, completion_tokens: null },
    { completion_tokens: 5 },
    null,
    'usage',
  ])('%j is not', (reported) => {
    expect(checkUsage(reported)).toBe(INVALID)
  })
})

describe('UsageTap limits', () => {
  const event = Buffer.from('data: {"choices":[{"delta":{"content":"more and more text"}}]}\n\n')

  it('keeps at most KEPT_FOR_ESTIMATE bytes however long the stream, and scales the estimate to all of it', async () => {
    const tap = new UsageTap('observe')
    tap.resume()
    const times = Math.ceil((8 * KEPT_FOR_ESTIMATE) / event.length)
    for (let i = 0; i < times; i++) tap.write(event)
    tap.end()
    await new Promise((r) => tap.on('end', r))
    const { text, scale } = tap.generated()
    expect(text.length).toBeLessThanOrEqual(KEPT_FOR_ESTIMATE)
    expect(text.length).toBeGreaterThan(KEPT_FOR_ESTIMATE / 10)
    expect(scale).toBeGreaterThan(7.9)
    expect(scale).toBeLessThan(8.1)
  })

  it('past its byte limit passes the complete events, then an error event, and nothing after', async () => {
    const tap = new UsageTap('observe', { maxBytes: 3 * event.length, maxEventBytes: Infinity })
    let cut = 0
    tap.onCut = () => cut++
    const out: Buffer[] = []
    tap.on('data', (c: Buffer) => out.push(c))
    // (The route stops writing when told of the cut; so does this.)
    for (let i = 0; i < 5 && cut === 0; i++) tap.write(event)
    await new Promise((r) => tap.on('end', r))
    expect(cut).toBe(1)
    const message = "The upstream's stream passed the gateway's limit of " + 3 * event.length + ' bytes and was ended.'
    expect(Buffer.concat(out).toString()).toBe(event.toString().repeat(4) + errorEvent('stream_too_large', message).toString())
    expect(tap.cutFor).toBe('stream_too_large')
  })

  it('an event past its limit is dropped, not passed on half-written', async () => {
    const tap = new UsageTap('observe', { maxBytes: Infinity, maxEventBytes: 1024 })
    const out: Buffer[] = []
    tap.on('data', (c: Buffer) => out.push(c))
    tap.write(event)
    tap.write(Buffer.from(`data: ${'x'.repeat(2000)}`))
    await new Promise((r) => tap.on('end', r))
    const text = Buffer.concat(out).toString()
    expect(text.startsWith(event.toString())).toBe(true)
    expect(text).not.toContain('xxx')
    expect(JSON.parse(text.slice(event.length + 'data: '.length)).error.code).toBe('stream_event_too_large')
  })
})
