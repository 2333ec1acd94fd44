import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { describe, expect, it } from 'vitest'
import { estimatePromptTokens, reservationTokens } from '../../src/usage/estimate.js'

/**
 * Prompt estimates (reservations before the call): gpt-tokenizer's count of each text, plus
 * OpenAI's 4 tokens per message and 3 for the reply. Counts are remembered per text; these check
 * that a remembered count is always the text's own.
 */

type Message = { role: string; content: string }
const expected = (messages: Message[]) => 3 + messages.reduce((sum, m) => sum + 4 + countTokens(m.content), 0)

describe('prompt token estimates', () => {
  it('count a conversation that grows turn by turn, its earlier texts counted before', () => {
    const system = 'You are a careful assistant who answers in full sentences and cites sources. '.repeat(200)
    const turns = ['What is the capital of France?', 'Paris.', 'And of Italy, and why?', 'Rome, for reasons of history.', 'Name three rivers there.']
    for (let n = 1; n <= turns.length; n++) {
      const messages: Message[] = [{ role: 'system', content: system }, ...turns.slice(0, n).map((content, i) => ({ role: i % 2 ? 'assistant' : 'user', content }))]
      expect(estimatePromptTokens('chat', { messages })).toBe(expected(messages))
      expect(estimatePromptTokens('chat', { messages })).toBe(expected(messages)) // all of it counted before
    }
  })

  it('tell texts apart by what they say, not by their length', () => {
    const a = 'antidisestablishmentarianism!'
    const b = 'the cat sat on the mat, again'
    expect(a.length).toBe(b.length)
    expect(countTokens(a)).not.toBe(countTokens(b))
    for (const content of [a, b, a, b]) {
      expect(estimatePromptTokens('chat', { messages: [{ role: 'user', content }] })).toBe(3 + 4 + countTokens(content))
    }
  })

  it('count content parts, names, tool calls and tools, and completions and embeddings inputs', () => {
    const toolCalls = [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{"city":"Paris"}' } }]
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
    const body = {
      messages: [
        { role: 'user', name: 'ada', content: [{ type: 'text', text: 'Where is ' }, { type: 'image_url', image_url: { url: 'data:,' } }, { type: 'text', text: 'the Louvre?' }] },
        { role: 'assistant', content: '', tool_calls: toolCalls },
      ],
      tools,
    }
    const want = 3 + 4 + countTokens('Where is the Louvre?') + countTokens('ada') + 4 + countTokens(JSON.stringify(toolCalls)) + countTokens(JSON.stringify(tools))
    expect(estimatePromptTokens('chat', body)).toBe(want)
    expect(estimatePromptTokens('completions', { prompt: ['Once upon', 'a time'] })).toBe(countTokens('Once upon') + countTokens('a time'))
    expect(estimatePromptTokens('embeddings', { input: [[1, 2, 3], 7, 'hello there'] })).toBe(3 + 1 + countTokens('hello there'))
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
