import { describe, expect, it } from 'vitest'
import { costMicros, priceSchema, toMicros, toUsd } from '../../src/spend.js'

describe('money', () => {
  it('costs prompt tokens at the input price and completion tokens at the output price, rounded up to the micro-dollar', () => {
    const price = { inputMicros: toMicros(0.3), outputMicros: toMicros(1.2) }
    // 1,000 × $0.30/M + 2,000 × $1.20/M = $0.0003 + $0.0024
    expect(costMicros({ prompt_tokens: 1000, completion_tokens: 2000, total_tokens: 3000 }, price)).toBe(2700)
    // 1 × $0.30/M is 0.3 micro-dollars: one, rounded up.
    expect(costMicros({ prompt_tokens: 1, completion_tokens: 0, total_tokens: 1 }, price)).toBe(1)
    expect(costMicros({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, price)).toBe(0)
    expect(costMicros({ prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 }, null)).toBe(0)
  })

  it('stays exact where the products pass 2^53', () => {
    const price = { inputMicros: toMicros(999_999.999999), outputMicros: 0 }
    // 10^7 tokens at $999,999.999999 per million: $9,999,999.99999 exactly.
    expect(costMicros({ prompt_tokens: 10_000_000, completion_tokens: 0, total_tokens: 10_000_000 }, price)).toBe(9_999_999_999_990)
  })

  it('turns micro-dollars into USD exactly, and sums in micro-dollars without drift', () => {
    expect(toUsd(1)).toBe(0.000001)
    expect(String(toUsd(1))).toBe('0.000001')
    const tenths = Array.from({ length: 10 }, () => toMicros(0.1)).reduce((a, b) => a + b, 0)
    expect(toUsd(tenths)).toBe(1)
  })

  it('takes prices in USD with at most six decimals, refusing anything else by name', () => {
    expect(priceSchema.safeParse({ input_per_million: 0.3, output_per_million: 1.2 }).success).toBe(true)
    const problem = (v: unknown) => {
      const r = priceSchema.safeParse(v)
      return r.success ? null : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`)
    }
    expect(problem({ input_per_million: -1, output_per_million: 1 })).toEqual(['input_per_million: must not be negative'])
    expect(problem({ input_per_million: '1', output_per_million: 1 })).toEqual(['input_per_million: must be a number of US dollars'])
    expect(problem({ input_per_million: 0.0000001, output_per_million: 1 })).toEqual(['input_per_million: must have at most six decimals'])
    expect(problem({ input_per_million: 1 })?.[0]).toContain('output_per_million')
  })
})
