import type { Usage } from '../quota/types.js'
import { INVALID, UsageTap, usageFromJson, type Reported, type StreamLimits } from '../stream/usage-tap.js'
import { countText } from './estimate.js'

export interface Measured {
  usage: Usage
  /** Counted by the gateway, because the upstream reported none it could believe. */
  estimated: boolean
  /** The upstream reported usage, but not as non-negative whole numbers: it was estimated instead. */
  invalid: boolean
}

/**
 * Measures one request's usage as its answer passes through: the upstream's own report when it
 * gives one that can be believed, else an estimate from the prompt and the text that was streamed
 * (flagged as such).
 */
export class UsageMeter {
  private failed = false
  private streamTap: UsageTap | null = null
  private bodyUsage: Reported = null

  /** `promptTokens` counts the prompt, only if an estimate is ever needed. */
  constructor(private readonly promptTokens: () => number | Promise<number>) {}

  /** The upstream answered with an error, or not at all: nothing was generated. */
  fail(): void {
    this.failed = true
  }

  /** The transform an answer's body passes through: it reads, and in `strip` mode removes the usage event. */
  tapStream(strip: boolean, limits?: StreamLimits): UsageTap {
    return (this.streamTap = new UsageTap(strip ? 'strip' : 'observe', limits))
  }

  /** A whole (non-streaming) answer: its usage, if it reports one. */
  readBody(body: Buffer): void {
    this.bodyUsage = usageFromJson(body)
  }

  async result(): Promise<Measured> {
    if (this.failed) return { usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, estimated: false, invalid: false }
    const reported = this.streamTap?.usage ?? this.bodyUsage
    if (reported !== null && reported !== INVALID) return { usage: reported, estimated: false, invalid: false }
    let completion = 0
    if (this.streamTap) {
      // Bounded work: only the first events are kept, and their count is scaled to all of them.
      const { text, scale } = this.streamTap.generated()
      completion = Math.ceil((await countText(text)) * scale)
    }
    const prompt = await this.promptTokens()
    return {
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
      estimated: true,
      invalid: reported === INVALID,
    }
  }
}
