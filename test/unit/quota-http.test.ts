import { describe, expect, it } from 'vitest'
import { goDuration, rateLimitHeaders } from '../../src/quota/http.js'

describe('OpenAI rate-limit headers', () => {
  it('write durations as Go does (time.Duration.String, to the millisecond)', () => {
    const cases: [number, string][] = [
      [-5, '0ms'],
      [0, '0ms'],
      [120, '120ms'],
      [999.4, '999ms'],
      [999.6, '1s'],
      [1000, '1s'],
      [1005, '1.005s'],
      [1050, '1.05s'],
      [1500, '1.5s'],
      [20_000, '20s'],
      [59_999, '59.999s'],
      [60_000, '1m0s'],
      [61_050, '1m1.05s'],
      [360_000, '6m0s'],
      [3_600_000, '1h0m0s'],
      [3_723_004, '1h2m3.004s'],
      [90_000_000, '25h0m0s'],
    ]
    expect(cases.map(([ms]) => goDuration(ms))).toEqual(cases.map(([, text]) => text))
  })

  it('name each window that applies, and only those', () => {
    expect(rateLimitHeaders({ requests: { limit: 600, remaining: 599, resetMs: 100 } })).toEqual({
      'x-ratelimit-limit-requests': '600',
      'x-ratelimit-remaining-requests': '599',
      'x-ratelimit-reset-requests': '100ms',
    })
    expect(rateLimitHeaders({ tokens: { limit: 40_000, remaining: 0, resetMs: 61_500 } })).toEqual({
      'x-ratelimit-limit-tokens': '40000',
      'x-ratelimit-remaining-tokens': '0',
      'x-ratelimit-reset-tokens': '1m1.5s',
    })
  })
})
