import { EventEmitter } from 'node:events'

/**
 * A cancellation signal as undici accepts it (an emitter of 'abort' with an `aborted` flag).
 * Much cheaper per request than an AbortController, which profiling showed on the hot path.
 */
export class Cancel extends EventEmitter {
  aborted = false

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    this.emit('abort')
  }

  /** Waits `ms`, or throws `gone()` as soon as this is aborted. */
  async sleep(ms: number, gone: () => Error): Promise<void> {
    if (this.aborted) throw gone()
    if (ms <= 0) return
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer)
        reject(gone())
      }
      const timer = setTimeout(() => {
        this.off('abort', onAbort)
        resolve()
      }, ms)
      this.once('abort', onAbort)
    })
  }
}
