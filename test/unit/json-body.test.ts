import { describe, expect, it } from 'vitest'
import { MAX_DEPTH, nestingExceeds } from '../../src/plugins/json-body.js'

describe('nestingExceeds', () => {
  it.each([
    ['flat', '{"a":1,"b":[1,2,3]}', 2, false],
    ['exactly the limit', '[[[1]]]', 3, false],
    ['one past it', '[[[[1]]]]', 3, true],
    ['objects and arrays alike', '{"a":{"b":[{"c":1}]}}', 3, true],
    ['brackets inside strings do not count', '{"a":"[[[[{{{{"}', 1, false],
    ['nor after an escaped quote', '{"a":"\\"[[[[{{{{"}', 1, false],
    ['an escaped backslash ends before the quote', '{"a":"\\\\"}', 1, false],
    ['siblings do not add up', '[[1],[2],[3],[4]]', 2, false],
  ])('%s', (_label, text, max, exceeds) => {
    expect(nestingExceeds(text, max)).toBe(exceeds)
  })

  it('catches two million levels without recursing', () => {
    expect(nestingExceeds(`{"x":${'['.repeat(2_000_000)}${']'.repeat(2_000_000)}}`, MAX_DEPTH)).toBe(true)
  })
})
