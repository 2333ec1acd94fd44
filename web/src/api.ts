/**
 * The console's one way to the gateway: same-origin fetch with the session cookie (HttpOnly, so
 * never visible here), the session's CSRF token on every change, and OpenAI's error envelope
 * turned into an ApiError that names the field it concerns.
 */

export interface Session {
  role: 'admin' | 'team'
  team: string | null
  key_id: string | null
  csrf_token: string
  expires_at: string
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
    readonly param: string | null,
  ) {
    super(message)
  }
}

let csrfToken: string | null = null
let onSignedOut: () => void = () => undefined

/** The session's CSRF token is kept in memory only; a reload asks the gateway for it again. */
export function useSession(session: Session | null, signedOut: () => void): void {
  csrfToken = session?.csrf_token ?? null
  onSignedOut = signedOut
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && csrfToken !== null) headers['x-csrf-token'] = csrfToken
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  if (res.status === 204) return undefined as T
  const data = (await res.json().catch(() => null)) as { error?: { message?: string; code?: string; param?: string } } | null
  if (!res.ok) {
    const error = data?.error
    const failure = new ApiError(res.status, error?.message ?? `${res.status} ${res.statusText}`, error?.code ?? null, error?.param ?? null)
    // The session ended (expired, signed out elsewhere, key revoked): back to the sign-in form.
    if (failure.code === 'invalid_session') onSignedOut()
    throw failure
  }
  return data as T
}

/** A query string of the values that are set. */
export function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v)
  const text = q.toString()
  return text === '' ? '' : `?${text}`
}
