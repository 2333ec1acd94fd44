import { pino, type Bindings, type ChildLoggerOptions, type DestinationStream, type Logger } from 'pino'
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
 * Standard output, written 4 KB at a time or every 100 ms, whichever comes first: a write per line
 * was a system call per request, 2.4-2.7 us of the gateway's CPU per request in profiles
 * (docs/benchmarks.md). pino flushes what is left synchronously when the process exits, however it
 * exits (a crash included); only a SIGKILL loses the last 100 ms.
 */
export const LOG_FLUSH_MS = 100

function bufferedStdout(): DestinationStream {
  const destination = pino.destination({ dest: 1, sync: false, minLength: 4096 })
  setInterval(() => destination.flush(), LOG_FLUSH_MS).unref()
  return destination
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
    stream ?? bufferedStdout(),
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
export interface LazyRequestLogger extends Pick<Logger, (typeof LEVELS)[number]> {}
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
