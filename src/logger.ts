import { pino, type Bindings, type ChildLoggerOptions, type DestinationStream, type Logger } from 'pino'
import onExit from 'on-exit-leak-free'
import type { LogLevel } from './config.js'

/**
 * Paths that may hold a secret. The gateway never logs headers or bodies on purpose; this is the
 * second line of defence should an object with them ever be logged.
 */
export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'request.headers.authorization',
  'apiKey',
  'api_key',
  'apiKeys',
  'key',
  'adminToken',
  'config.apiKeys',
  'config.adminToken',
]
// Exact paths only: wildcard paths made redaction a visible cost on every log line (profiled).

/**
 * Standard output for the log, written in blocks of about 16 KB or every 100 ms, whichever comes
 * first. The lines of a block are gathered in an array and joined once; pino's sonic-boom
 * destination then writes the block (asynchronously, on the thread pool, with its handling of
 * partial writes, EAGAIN and a closed pipe).
 * Handing each line to sonic-boom with a 4 KB minimum instead costs the event loop about 1.4
 * times as much per line: sonic-boom measures its whole pending string at every line, and each of
 * its writes is a hand-off to the thread pool that wakes a thread. What is left is written synchronously when the process exits, however it
 * exits (a crash included); only a SIGKILL loses the last 100 ms.
 */
export const LOG_FLUSH_MS = 100
const LOG_BLOCK_CHARS = 16 * 1024

/** What BlockWriter writes through: pino's sonic-boom destination. */
interface Out {
  write(data: string): boolean
  flushSync(): void
}

export class BlockWriter implements DestinationStream {
  private lines: string[] = []
  private chars = 0

  constructor(
    private readonly out: Out,
    private readonly blockChars = LOG_BLOCK_CHARS,
  ) {
    setInterval(() => this.flush(), LOG_FLUSH_MS).unref()
    onExit.register(this, (writer: BlockWriter) => writer.flushSync())
  }

  write(line: string): void {
    this.lines.push(line)
    this.chars += line.length
    if (this.chars >= this.blockChars) this.flush()
  }

  /**
   * Hands what is gathered to sonic-boom, which writes it at once unless a write is under way.
   * (pino's `logger.flush(cb)` comes here: `cb` is called once the lines are handed over, as
   * sonic-boom itself calls it when it keeps nothing back.)
   */
  flush(cb?: (err?: Error) => void): void {
    if (this.lines.length > 0) {
      const block = this.lines.join('')
      this.lines = []
      this.chars = 0
      this.out.write(block)
    }
    cb?.()
  }

  /** Writes everything, synchronously. */
  flushSync(): void {
    this.flush()
    this.out.flushSync()
  }
}

export function createLogger(level: LogLevel, stream?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tollgate' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      // Epoch milliseconds (pino's default): an ISO string per line was a visible cost (profiled).
      timestamp: pino.stdTimeFunctions.epochTime,
    },
    stream ?? new BlockWriter(pino.destination({ dest: 1, sync: false })),
  )
}

type LogFn = (...args: unknown[]) => void
const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const

/**
 * Fastify's per-request logger, made only when something logs through it: Fastify makes a pino
 * child (bindings: the request id) for every request, yet the gateway logs through it only on
 * errors and warnings. The request line itself is written on the root logger with the same `reqId`
 * field (see request-log.ts).
 */
// (The level methods are put on the prototype below; the interface gives them their types.)
// eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unsafe-declaration-merging
export interface LazyRequestLogger extends Pick<Logger, (typeof LEVELS)[number]> {}
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class LazyRequestLogger {
  #child: Logger | null = null
  constructor(
    private readonly parent: Logger,
    private readonly bindings: Bindings,
    private readonly options: ChildLoggerOptions,
  ) {}

  /** The pino child, made on first use. */
  logger(): Logger {
    return (this.#child ??= this.parent.child(this.bindings, this.options))
  }
  get level(): string {
    return this.logger().level
  }
  set level(level: string) {
    this.logger().level = level
  }
  isLevelEnabled(level: string): boolean {
    return this.logger().isLevelEnabled(level)
  }
  silent(): void {}
  child(bindings: Bindings, options?: ChildLoggerOptions): Logger {
    return this.logger().child(bindings, options)
  }
}
for (const level of LEVELS) {
  LazyRequestLogger.prototype[level] = function (this: LazyRequestLogger, ...args: unknown[]) {
    const real = this.logger()
    ;(real[level] as LogFn).apply(real, args)
  } as never
}
