import { invalidRequest } from '../errors.js'
import type { Count, Endpoint } from './endpoints.js'

/**
 * Step 1: the body. An object with a model name that can be a model and the endpoint's input,
 * and the counts a reservation is made of within OpenAI's bounds; anything else is a 400 in
 * OpenAI's words, naming the field, before any limit or upstream sees the request.
 */

export function checkBody(endpoint: Endpoint, body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalidRequest('The request body must be a JSON object.', null, 'invalid_json')
  }
  const b = body as Record<string, unknown>
  if (typeof b.model !== 'string' || b.model.trim() === '') {
    throw invalidRequest("'model' is required and must be a non-empty string.", 'model', 'missing_required_parameter')
  }
  checkModelName(b.model)
  const { field, check, expected } = endpoint.input
  if (!(field in b)) throw invalidRequest(`'${field}' is required.`, field, 'missing_required_parameter')
  if (!check(b[field])) throw invalidRequest(`'${field}' must be ${expected}.`, field, 'invalid_type')
  if ('stream' in b && b.stream !== null && typeof b.stream !== 'boolean') {
    throw invalidRequest("'stream' must be true or false.", 'stream', 'invalid_type')
  }
  if ('stream_options' in b && b.stream_options !== null && b.stream !== true) {
    throw invalidRequest("'stream_options' is only allowed when 'stream' is true.", 'stream_options', 'invalid_value')
  }
  for (const count of endpoint.counts) checkCount(b, count)
  for (const field of END_USER_FIELDS) checkEndUser(b, field)
  return b
}

/** Where a request names its application's end user: OpenAI's `safety_identifier`, and `user`, its older name. */
const END_USER_FIELDS = ['safety_identifier', 'user'] as const
const MAX_END_USER = 256

function checkEndUser(b: Record<string, unknown>, field: string): void {
  const v = b[field]
  if (v === undefined || v === null) return
  if (typeof v !== 'string') throw invalidRequest(`'${field}' must be a string naming your end user.`, field, 'invalid_type')
  if (v.length > MAX_END_USER) throw invalidRequest(`'${field}' must be at most ${MAX_END_USER} characters.`, field, 'invalid_value')
}

/** The end user a (checked) body names, if any: `safety_identifier` first, then `user`; empty is none. */
export function endUserOf(b: Record<string, unknown>): string | null {
  for (const field of END_USER_FIELDS) {
    const v = b[field]
    if (typeof v === 'string' && v !== '') return v
  }
  return null
}

function checkCount(b: Record<string, unknown>, { field, min, max }: Count): void {
  const v = b[field]
  if (v === undefined || v === null) return
  if (typeof v !== 'number') {
    const got = Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`
    throw invalidRequest(`Invalid type for '${field}': expected an integer, but got ${got} instead.`, field, 'invalid_type')
  }
  if (Number.isFinite(v) && !Number.isInteger(v))
    throw invalidRequest(`Invalid type for '${field}': expected an integer, but got a decimal number instead.`, field, 'invalid_type')
  if (v < min)
    throw invalidRequest(
      `Invalid '${field}': integer below minimum value. Expected a value >= ${min}, but got ${v} instead.`,
      field,
      'integer_below_min_value',
    )
  if (v > max)
    throw invalidRequest(
      `Invalid '${field}': integer above maximum value. Expected a value <= ${max}, but got ${v} instead.`,
      field,
      'integer_above_max_value',
    )
}

/** Characters a model name never holds: whitespace, control and invisible format characters. */
const NOT_IN_A_NAME = /[\s\p{Cc}\p{Cf}]/u
const MAX_MODEL_NAME = 256

/** A name that cannot be a model gets a 400 naming `model`, before any limit or upstream sees it. */
function checkModelName(name: string): void {
  const problem =
    name.length > MAX_MODEL_NAME
      ? `is longer than ${MAX_MODEL_NAME} characters`
      : NOT_IN_A_NAME.test(name)
        ? 'holds whitespace or control characters'
        : name.split('/').includes('')
          ? 'has an empty path segment'
          : null
  if (problem !== null)
    throw invalidRequest(
      `The model name ${JSON.stringify(name.slice(0, MAX_MODEL_NAME))} ${problem}; no model is named so.`,
      'model',
      'invalid_model',
    )
}
