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

export interface GatewayErrorOptions {
  type: string
  code?: string | null
  param?: string | null
  headers?: Record<string, string>
  cause?: unknown
  /** A 5xx that is part of normal operation (a drain): not logged as an error; the request line has it. */
  expected?: boolean
}

export class GatewayError extends Error {
  readonly statusCode: number
  readonly type: string
  readonly code: string | null
  readonly param: string | null
  readonly headers: Record<string, string>
  readonly expected: boolean

  constructor(statusCode: number, message: string, options: GatewayErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GatewayError'
    this.statusCode = statusCode
    this.type = options.type
    this.code = options.code ?? null
    this.param = options.param ?? null
    this.headers = options.headers ?? {}
    this.expected = options.expected ?? false
  }

  toJSON(): OpenAIErrorBody {
    return openAIError(this.message, this.type, this.code, this.param)
  }
}

export function openAIError(message: string, type: string, code: string | null = null, param: string | null = null): OpenAIErrorBody {
  return { error: { message, type, param, code } }
}

export const invalidRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new GatewayError(400, message, { type: 'invalid_request_error', param, code })

export const invalidApiKey = (message: string) => new GatewayError(401, message, { type: 'invalid_request_error', code: 'invalid_api_key' })

export const notFound = (message: string, code: string | null = null, param: string | null = null) =>
  new GatewayError(404, message, { type: 'invalid_request_error', code, param })

export const modelNotFound = (model: string) =>
  notFound(`The model '${model}' does not exist or is not served by this gateway.`, 'model_not_found', 'model')

export const storeUnavailable = (cause: unknown) =>
  new GatewayError(503, 'The gateway cannot reach its key store right now. Please retry shortly.', {
    type: 'server_error',
    code: 'store_unavailable',
    cause,
  })

/** A request that reached an instance shutting down (on a kept-alive connection): another instance will take it. */
export const draining = () =>
  new GatewayError(503, 'This gateway instance is shutting down. Please retry; another instance will answer.', {
    type: 'server_error',
    code: 'gateway_draining',
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
