/**
 * The one place that knows OpenAI's error envelope. Everything the gateway refuses is a
 * GatewayError; the error handler plugin turns it into
 * {"error":{"message","type","param","code"}} with the right status and headers.
 */

export interface OpenAIErrorBody {
  error: {
    message: string
    type: string
    param: string | null
    code: string | null
  }
}

/**
 * Every error code the gateway itself answers, with its HTTP status and OpenAI `type` (the first
 * type is the default; a few codes take one of several, as OpenAI's do). docs/errors.md's table
 * lists the same rows (test/unit/errors.test.ts checks it). Errors an upstream answers keep the
 * upstream's own status and code (upstream/errors.ts) and are not listed here. The stream codes
 * reach the client in an error event of a stream already under way; their status is what the
 * request log and metrics count.
 */
export const ERRORS = {
  // The request itself
  invalid_json: { status: 400, types: ['invalid_request_error'] },
  missing_required_parameter: { status: 400, types: ['invalid_request_error'] },
  invalid_type: { status: 400, types: ['invalid_request_error'] },
  invalid_value: { status: 400, types: ['invalid_request_error'] },
  integer_below_min_value: { status: 400, types: ['invalid_request_error'] },
  integer_above_max_value: { status: 400, types: ['invalid_request_error'] },
  invalid_model: { status: 400, types: ['invalid_request_error'] },
  invalid_request: { status: 400, types: ['invalid_request_error'] },
  quota_too_small: { status: 400, types: ['invalid_request_error'] },
  request_timeout: { status: 408, types: ['invalid_request_error'] },
  request_too_large: { status: 413, types: ['invalid_request_error'] },
  headers_too_large: { status: 431, types: ['invalid_request_error'] },
  unknown_route: { status: 404, types: ['invalid_request_error'] },
  model_not_found: { status: 404, types: ['invalid_request_error'] },
  // Credentials
  invalid_api_key: { status: 401, types: ['invalid_request_error'] },
  invalid_admin_token: { status: 401, types: ['invalid_request_error'] },
  auth_rate_limited: { status: 429, types: ['requests'] },
  invalid_sign_in: { status: 401, types: ['invalid_request_error'] },
  invalid_session: { status: 401, types: ['invalid_request_error'] },
  csrf_token_invalid: { status: 403, types: ['permission_error'] },
  admin_only: { status: 403, types: ['permission_error'] },
  // Access and limits
  model_not_allowed: { status: 403, types: ['permission_error'] },
  rate_limit_exceeded: { status: 429, types: ['requests', 'tokens'] },
  concurrency_limit_exceeded: { status: 429, types: ['requests'] },
  insufficient_quota: { status: 429, types: ['insufficient_quota'] },
  // The admin API
  team_not_found: { status: 404, types: ['invalid_request_error'] },
  key_not_found: { status: 404, types: ['invalid_request_error'] },
  team_exists: { status: 409, types: ['invalid_request_error'] },
  key_inactive: { status: 409, types: ['invalid_request_error'] },
  // The upstream, as the gateway meets it
  upstream_not_configured: { status: 503, types: ['server_error'] },
  upstream_keys_exhausted: { status: 429, types: ['requests'] },
  upstream_auth_failed: { status: 502, types: ['server_error'] },
  upstream_unreachable: { status: 502, types: ['server_error'] },
  upstream_timeout: { status: 504, types: ['server_error'] },
  upstream_answer_too_large: { status: 502, types: ['server_error'] },
  // A stream under way, ended by the gateway
  stream_too_large: { status: 502, types: ['server_error'] },
  stream_too_long: { status: 502, types: ['server_error'] },
  stream_event_too_large: { status: 502, types: ['server_error'] },
  // The gateway
  store_unavailable: { status: 503, types: ['server_error'] },
  gateway_draining: { status: 503, types: ['server_error'] },
  internal_error: { status: 500, types: ['server_error'] },
  // Never sent (the client has gone): what the request log counts a client leaving as.
  client_closed_request: { status: 499, types: ['invalid_request_error'] },
} as const satisfies Record<string, { status: number; types: readonly [string, ...string[]] }>

/** An error code the gateway answers. */
export type ErrorCode = keyof typeof ERRORS
/** The OpenAI types a code may carry. */
export type ErrorType<C extends ErrorCode> = (typeof ERRORS)[C]['types'][number]

export interface GatewayErrorOptions<C extends ErrorCode> {
  /** One of the code's types, where it has several (its first by default). */
  type?: ErrorType<C>
  param?: string | null
  headers?: Record<string, string>
  cause?: unknown
  /** A 5xx that is part of normal operation (a drain): not logged as an error; the request line has it. */
  expected?: boolean
}

export class GatewayError<C extends ErrorCode = ErrorCode> extends Error {
  readonly statusCode: number
  readonly type: string
  readonly code: C
  readonly param: string | null
  readonly headers: Record<string, string>
  readonly expected: boolean

  constructor(code: C, message: string, options: GatewayErrorOptions<C> = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GatewayError'
    this.code = code
    this.statusCode = ERRORS[code].status
    this.type = options.type ?? ERRORS[code].types[0]
    this.param = options.param ?? null
    this.headers = options.headers ?? {}
    this.expected = options.expected ?? false
  }

  toJSON(): OpenAIErrorBody {
    return openAIError(this.message, this.type, this.code, this.param)
  }
}

/** The envelope of a catalogued error, for answers made outside the error handler. */
export function errorBody(code: ErrorCode, message: string): OpenAIErrorBody {
  return openAIError(message, ERRORS[code].types[0], code)
}

export function openAIError(message: string, type: string, code: string | null = null, param: string | null = null): OpenAIErrorBody {
  return { error: { message, type, param, code } }
}

/** A 400 naming the field at fault. */
export const invalidRequest = (
  message: string,
  param: string | null,
  code:
    | 'invalid_json'
    | 'missing_required_parameter'
    | 'invalid_type'
    | 'invalid_value'
    | 'invalid_model'
    | (keyof typeof ERRORS & `integer_${string}`),
) => new GatewayError(code, message, { param })

export const modelNotFound = (model: string) =>
  new GatewayError('model_not_found', `The model '${model}' does not exist or is not served by this gateway.`, { param: 'model' })

export const storeUnavailable = (cause: unknown) =>
  new GatewayError('store_unavailable', 'The gateway cannot reach its key store right now. Please retry shortly.', { cause })

/** A request that reached an instance shutting down (on a kept-alive connection): another instance will take it. */
export const draining = () =>
  new GatewayError('gateway_draining', 'This gateway instance is shutting down. Please retry; another instance will answer.', {
    headers: { connection: 'close', 'x-should-retry': 'true' },
    expected: true,
  })

/** Awaits a store operation; a failure of the store becomes the 503 above. */
export async function fromStore<T>(op: Promise<T>): Promise<T> {
  try {
    return await op
  } catch (err) {
    throw storeUnavailable(err)
  }
}

/** Type OpenAI uses for a status, for errors whose origin gives none we can trust. */
export function typeForStatus(status: number): string {
  if (status === 401) return 'invalid_request_error'
  if (status === 403) return 'permission_error'
  if (status === 429) return 'requests'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}
