import { GatewayError, openAIError, typeForStatus, type OpenAIErrorBody } from '../errors.js'

/**
 * NVIDIA answers errors in several shapes (docs/nvidia.md): {status,title,detail}, {error:"text"},
 * {message,type,code}, {error:{message,type,code}}, and plain text. OpenAI clients understand one:
 * {"error":{"message","type","param","code"}}. This turns any of them into that, keeping the status,
 * except 401/403: those mean the gateway's own upstream key was refused, which is a 502 for the
 * client, whose key was fine.
 */

export interface NormalisedUpstreamError {
  status: number
  body: OpenAIErrorBody
  /** The upstream refused the gateway's credentials: the operator must act. */
  credentialsRefused: boolean
}

const MAX_MESSAGE = 2_000
const NO_RETRY = { 'x-should-retry': 'false' }

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() ? v.trim() : undefined)

/** Reads the message, type and code out of whichever shape the upstream used. */
export function describeUpstreamBody(text: string): { message?: string; type?: string; code?: string; param?: string } {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    const plain = text.trim()
    return plain ? { message: plain } : {}
  }
  if (!isObject(data)) return str(text) ? { message: text.trim() } : {}
  const error = data.error
  if (isObject(error)) {
    // {error:{message,type,code,param}}: OpenAI's own shape, or NVIDIA's 503.
    return {
      message: str(error.message),
      type: str(error.type),
      code: str(error.code),
      param: str(error.param),
    }
  }
  if (str(error)) return { message: str(error) } // {error:"body -> … (type=extra_forbidden)"}
  if (str(data.title) || str(data.detail)) {
    // {status,title,detail}: NVIDIA's problem+json.
    const title = str(data.title)
    const detail = str(data.detail)
    return { message: title && detail ? `${title}: ${detail}` : (title ?? detail) }
  }
  if (str(data.message)) return { message: str(data.message), type: str(data.type), code: str(data.code) }
  return {}
}

const DEFAULT_CODES: Record<number, string> = {
  402: 'upstream_payment_required',
  404: 'model_not_found',
  410: 'model_retired',
}

export function normaliseUpstreamError(
  upstream: string,
  status: number,
  text: string,
  scrub: (s: string) => string,
): NormalisedUpstreamError {
  const found = describeUpstreamBody(text)
  const detail = scrub((found.message ?? '').slice(0, MAX_MESSAGE))

  if (status === 401 || status === 403) {
    return {
      status: 502,
      credentialsRefused: true,
      body: openAIError(
        `The upstream '${upstream}' refused the gateway's own credentials (HTTP ${status}${detail ? `: ${detail}` : ''}). ` +
          'Your API key was accepted by the gateway; its operator must fix the upstream key.',
        'server_error',
        'upstream_auth_failed',
      ),
    }
  }

  if (status === 429) {
    // Not the team's own limit (code rate_limit_exceeded): the upstream refused the gateway's key.
    return {
      status,
      credentialsRefused: false,
      body: openAIError(
        `Upstream '${upstream}' is rate-limiting the gateway's API key${detail ? ` (${detail})` : ''}; this is the upstream's limit, not your team's quota. ` +
          'The gateway has already retried as configured.',
        'requests',
        'upstream_rate_limited',
      ),
    }
  }
  const message = detail
    ? `Upstream '${upstream}' answered ${status}: ${detail}`
    : `Upstream '${upstream}' answered ${status} without a message.`
  // The upstream's `type` is often a label ("Service Unavailable"); OpenAI clients expect theirs.
  const code = found.code && !/^\d+$/.test(found.code) ? found.code : (DEFAULT_CODES[status] ?? null)
  return {
    status,
    credentialsRefused: false,
    body: openAIError(message, typeForStatus(status), code, found.param ?? null),
  }
}

/**
 * Transport failures (no HTTP answer at all) as the error a client should see. The gateway has
 * retried what it could: `x-should-retry: false` keeps the SDKs from multiplying its attempts.
 */
export function mapTransportError(upstream: string, err: unknown): GatewayError {
  if (err instanceof GatewayError) return err // (the gateway's own decision, a deadline say)
  const code = (err as { code?: string }).code ?? ''
  if (code === 'TG_ANSWER_TOO_LARGE') {
    return new GatewayError(
      'upstream_answer_too_large',
      `Upstream '${upstream}' answered with more than the gateway reads (${(err as { limit: number }).limit} bytes).`,
      {
        cause: err,
        headers: NO_RETRY,
      },
    )
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new GatewayError('upstream_timeout', `Upstream '${upstream}' did not answer in time.`, {
      cause: err,
      headers: NO_RETRY,
    })
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new GatewayError('upstream_timeout', `Could not connect to upstream '${upstream}' in time.`, {
      cause: err,
      headers: NO_RETRY,
    })
  }
  return new GatewayError('upstream_unreachable', `Could not reach upstream '${upstream}'${code ? ` (${code})` : ''}.`, {
    cause: err,
    headers: NO_RETRY,
  })
}
