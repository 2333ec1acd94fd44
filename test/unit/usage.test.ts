import { describe, expect, it } from 'vitest'
import { usageFromJson } from '../../src/stream/usage-tap.js'

const read = (text: string) => usageFromJson(Buffer.from(text))

describe('usage of a whole JSON answer', () => {
  it.each([
    ['compact', '{"id":"x","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}', [9, 7, 16]],
    [
      'pretty-printed',
      '{\n  "usage": {\n    "prompt_tokens" : 120,\n\t"completion_tokens": 0,\r\n    "total_tokens": 120\n  }\n}',
      [120, 0, 120],
    ],
    [
      'with detail objects around the counts',
      '{"usage":{"prompt_tokens_details":{"cached_tokens":3},"prompt_tokens":11,"completion_tokens_details":{"reasoning_tokens":4},"completion_tokens":5,"total_tokens":16}}',
      [11, 5, 16],
    ],
    ['fields in another order', '{"usage":{"total_tokens":30,"completion_tokens":10,"prompt_tokens":20}}', [20, 10, 30]],
    [
      'an earlier "usage" in the generated text',
      '{"choices":[{"message":{"content":"\\"usage\\": {\\"prompt_tokens\\": 1}"}}],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}',
      [2, 3, 5],
    ],
    ['a count written as a float (parsed)', '{"usage":{"prompt_tokens":2.0,"completion_tokens":3,"total_tokens":5}}', [2, 3, 5]],
    ['no total (parsed, summed)', '{"usage":{"prompt_tokens":4,"completion_tokens":6}}', [4, 6, 10]],
    ['embeddings: no completion tokens', '{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}', [8, 0, 8]],
  ])('%s', (_label, text, [prompt, completion, total]) => {
    expect(read(text)).toEqual({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: total })
  })

  it.each([
    ['no usage', '{"id":"x","choices":[]}'],
    ['usage null', '{"id":"x","usage":null}'],
    ['usage null before other objects', '{"usage":null,"choices":[{"x":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}]}'],
    ['a cut-off body', '{"usage":{"prompt_tokens":9,"completion_tok'],
  ])('%s: none', (_label, text) => {
    expect(read(text)).toBeNull()
  })
})
