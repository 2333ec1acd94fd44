import { z } from 'zod'
import type { Usage } from './quota/types.js'

/**
 * Money. Prices and budgets are written in USD (up to six decimals) and kept as whole micro-dollars
 * (one millionth of a dollar): sums of them are exact, with no floating-point drift, and turn back
 * into USD only where they are shown.
 */

/** A model's price, in micro-dollars per million tokens. */
export interface Price {
  inputMicros: number
  outputMicros: number
}

/** The most a price or budget may be: a million dollars (per million tokens, or per period). */
const MAX_USD = 1_000_000

/** USD as a number, at least 0, with at most six decimals. */
export const usd = z
  .number({ error: 'must be a number of US dollars' })
  .min(0, { error: 'must not be negative' })
  .max(MAX_USD, { error: `must be at most ${MAX_USD}` })
  .refine((v) => Math.abs(v * 1e6 - Math.round(v * 1e6)) < 1e-6, { error: 'must have at most six decimals' })

export const priceSchema = z.strictObject({
  input_per_million: usd,
  output_per_million: usd,
})

/** Whole micro-dollars of an amount in USD (checked by `usd`). */
export const toMicros = (dollars: number): number => Math.round(dollars * 1e6)

/** USD of whole micro-dollars: exact to the micro-dollar (an integer over 1e6 prints as its decimal). */
export const toUsd = (micros: number): number => micros / 1e6

/**
 * What a request cost at a price, in whole micro-dollars, rounded up: prompt tokens at the input
 * price and completion tokens at the output price. No price: nothing. (Products of tokens and
 * prices can pass 2^53, so they are taken in BigInt.)
 */
export function costMicros(usage: Usage, price: Price | null): number {
  if (price === null) return 0
  const perMillion = BigInt(usage.prompt_tokens) * BigInt(price.inputMicros) + BigInt(usage.completion_tokens) * BigInt(price.outputMicros)
  return Number((perMillion + 999_999n) / 1_000_000n)
}
