import type { Transform } from 'node:stream'
import type { Usage } from '../quota/types.js'
import { UsageTap, usageFromJson } from '../stream/usage-tap.js'
import { countText } from './estimate.js'

/**
 * Measures one request's usage as its answer passes through: the upstream's own report when it
 * gives one, else an estimate from the prompt and the text that was streamed (flagged as such).
 */
export class UsageMeter {
  private failed = false
  private streamTap: UsageTap | null = null
  private bodyUsage: Usage | null = null

  /** `promptTokens` counts the prompt, only if an estimate is ever needed. */
  constructor(private readonly promptTokens: () => number) {}

  /** The upstream answered with an error, or not at all: nothing was generated. */
  fail(): void {
    this.failed = true
  }

  /** The transform an answer's body passes through: it reads, and in `strip` mode removes the usage event. */
  tapStream(strip: boolean): Transform {
    return (this.streamTap = new UsageTap(strip ? 'strip' : 'observe'))
  }

  /** A whole (non-streaming) answer: its usage, if it reports one. */
  readBody(body: Buffer): void {
    this.bodyUsage = usageFromJson(body)
  }

  result(): { usage: Usage; estimated: boolean } {
    if (this.failed) return { usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, estimated: false }
    const reported = this.streamTap?.usage ?? this.bodyUsage
    if (reported) return { usage: reported, estimated: false }
    const completion = this.streamTap ? countText(this.streamTap.generatedText()) : 0
    const prompt = this.promptTokens()
    return {
      usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
      estimated: true,
    }
  }
}
