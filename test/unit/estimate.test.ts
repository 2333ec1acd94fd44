import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { describe, expect, it } from 'vitest'
import { countText, EXACT_COUNT_CHARS, estimatePromptTokens, MAX_RUN, reservationTokens, segmentEnd } from '../../src/usage/estimate.js'

/**
 * Prompt estimates (reservations before the call): gpt-tokenizer's count of each text, plus
 * OpenAI's 4 tokens per message and 3 for the reply. Counts are remembered per text; these check
 * that a remembered count is always the text's own.
 */

type Message = { role: string; content: string }
const expected = (messages: Message[]) => 3 + messages.reduce((sum, m) => sum + 4 + countTokens(m.content), 0)

describe('prompt token estimates', () => {
  it('count a conversation that grows turn by turn, its earlier texts counted before', async () => {
    const system = 'You are a careful assistant who answers in full sentences and cites sources. '.repeat(200)
    const turns = [
      'What is the capital of France?',
      'Paris.',
      'And of Italy, and why?',
      'Rome, for reasons of history.',
      'Name three rivers there.',
    ]
    for (let n = 1; n <= turns.length; n++) {
      const messages: Message[] = [
        { role: 'system', content: system },
        ...turns.slice(0, n).map((content, i) => ({ role: i % 2 ? 'assistant' : 'user', content })),
      ]
      expect(await estimatePromptTokens('chat', { messages })).toBe(expected(messages))
      expect(await estimatePromptTokens('chat', { messages })).toBe(expected(messages)) // all of it counted before
    }
  })

  it('tell texts apart by what they say, not by their length', async () => {
    const a = 'antidisestablishmentarianism!'
    const b = 'the cat sat on the mat, again'
    expect(a.length).toBe(b.length)
    expect(countTokens(a)).not.toBe(countTokens(b))
    for (const content of [a, b, a, b]) {
      expect(await estimatePromptTokens('chat', { messages: [{ role: 'user', content }] })).toBe(3 + 4 + countTokens(content))
    }
  })

  it('count content parts, names, tool calls and tools, and completions and embeddings inputs', async () => {
    const toolCalls = [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{"city":"Paris"}' } }]
    const tools = [
      { type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
    ]
    const body = {
      messages: [
        {
          role: 'user',
          name: 'ada',
          content: [
            { type: 'text', text: 'Where is ' },
            { type: 'image_url', image_url: { url: 'data:,' } },
            { type: 'text', text: 'the Louvre?' },
          ],
        },
        { role: 'assistant', content: '', tool_calls: toolCalls },
      ],
      tools,
    }
    const want =
      3 +
      4 +
      countTokens('Where is the Louvre?') +
      countTokens('ada') +
      4 +
      countTokens(JSON.stringify(toolCalls)) +
      countTokens(JSON.stringify(tools))
    expect(await estimatePromptTokens('chat', body)).toBe(want)
    expect(await estimatePromptTokens('completions', { prompt: ['Once upon', 'a time'] })).toBe(
      countTokens('Once upon') + countTokens('a time'),
    )
    expect(await estimatePromptTokens('embeddings', { input: [[1, 2, 3], 7, 'hello there'] })).toBe(3 + 1 + countTokens('hello there'))
  })
})

describe('reservations', () => {
  it('reserve the prompt and the most each choice may use: max_tokens, else the fallback; 0 is no completion', () => {
    expect(reservationTokens('completions', { max_tokens: 0 }, 7, 4096)).toBe(7)
    expect(reservationTokens('completions', {}, 7, 4096)).toBe(7 + 4096)
    expect(reservationTokens('chat', { max_completion_tokens: 100, n: 3 }, 7, 4096)).toBe(7 + 300)
    expect(reservationTokens('embeddings', { max_tokens: 100 }, 7, 4096)).toBe(7)
  })
})

describe('counting what a client chooses to send', () => {
  it('a long run of one kind of character is counted in pieces of MAX_RUN, not as one quadratic piece', async () => {
    const word = 'x'.repeat(200_000)
    const pieces = Math.ceil(word.length / MAX_RUN)
    const perPiece = countTokens('x'.repeat(MAX_RUN))
    expect(await countText(word)).toBe(perPiece * pieces - perPiece + countTokens('x'.repeat(word.length - MAX_RUN * (pieces - 1))))
  })

  it('cuts text only where the tokenizer starts a piece anyway: ordinary text counts as it would whole', async () => {
    const prose = 'The quick brown fox, at 10:45, jumps over the lazy dog; "quoted" (parenthesised) text follows.\n\n'.repeat(500)
    expect(prose.length).toBeGreaterThan(4 * 4096)
    expect(await countText(prose)).toBe(countTokens(prose))
    const json = JSON.stringify({
      tools: Array.from({ length: 200 }, (_, i) => ({ type: 'function', function: { name: `tool_${i}`, parameters: { type: 'object' } } })),
    })
    expect(await countText(json)).toBe(countTokens(json))
  })

  it('segments never split a surrogate pair', () => {
    const text = '🙂'.repeat(5_000)
    for (let at = 0; at < text.length;) {
      const end = segmentEnd(text, at)
      expect(end).toBeGreaterThan(at)
      expect(text.charCodeAt(end - 1) >= 0xd800 && text.charCodeAt(end - 1) <= 0xdbff).toBe(false)
      at = end
    }
  })

  it('past EXACT_COUNT_CHARS each UTF-8 byte counts as a token: an upper bound, in bounded time', async () => {
    const head = 'ab '.repeat(Math.ceil(EXACT_COUNT_CHARS / 3)).slice(0, EXACT_COUNT_CHARS)
    const tail = 'é'.repeat(20_000)
    const counted = await countText(head + tail)
    // (Counting stops at the first segment end past the budget, a little into the tail.)
    expect(counted).toBeLessThanOrEqual(countTokens(head) + 2 * tail.length + 1)
    expect(counted).toBeGreaterThan(countTokens(head + tail))
  })

  it('a prompt that takes long to count is counted between turns of the event loop', async () => {
    let x = 1
    const words: string[] = []
    for (let i = 0; i < 200_000; i++) {
      x = (x * 1_103_515_245 + 12_345) % 2 ** 31
      words.push(x.toString(36))
    }
    const counting = estimatePromptTokens('chat', { messages: [{ role: 'user', content: words.join(' ') }] })
    expect(counting).toBeInstanceOf(Promise)
    let turns = 0
    let done = false
    const tick = () => {
      turns++
      if (!done) setImmediate(tick)
    }
    setImmediate(tick)
    const n = await counting
    done = true
    expect(n).toBeGreaterThan(words.length)
    expect(turns).toBeGreaterThan(1)
  })
})
