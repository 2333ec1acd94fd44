import { pino, type DestinationStream, type Logger } from 'pino'
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

export function createLogger(level: LogLevel, stream?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'tollgate' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      // Epoch milliseconds (pino's default): an ISO string per line was a visible cost (profiled).
      timestamp: pino.stdTimeFunctions.epochTime,
    },
    stream,
  )
}
