import { createHash, hash, randomBytes, timingSafeEqual } from 'node:crypto'

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

/** Uniform base62 string from the CSPRNG (rejection sampling, so no character is favoured). */
export function randomBase62(length: number): string {
  let out = ''
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248) out += BASE62[byte % 62] // 248 = 4 * 62: keeps the draw uniform
      if (out.length === length) break
    }
  }
  return out
}

/** 43 base62 characters carry 256 bits: at least as much as 32 random bytes. */
export const CLIENT_KEY_PREFIX = 'tg-'
const CLIENT_KEY_BODY = 43

export function generateClientKey(): string {
  return CLIENT_KEY_PREFIX + randomBase62(CLIENT_KEY_BODY)
}

export function looksLikeClientKey(value: string): boolean {
  return value.length === CLIENT_KEY_PREFIX.length + CLIENT_KEY_BODY && value.startsWith(CLIENT_KEY_PREFIX)
}

export function generateKeyId(): string {
  return `key_${randomBase62(16)}`
}

/** Only this is stored: a SHA-256 of the whole key (the keys are random, so no salt is needed). */
export function hashClientKey(key: string): string {
  return hash('sha256', key)
}

/** What lists show so a person can tell keys apart: `tg-AbCd…wxYz`. */
export function keyHint(key: string): string {
  return `${key.slice(0, CLIENT_KEY_PREFIX.length + 4)}…${key.slice(-4)}`
}

/** Constant-time comparison of two secrets of any length. */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

/** `Authorization: Bearer <token>` → token, or null. */
/** The key of an `x-api-key` header (Anthropic's clients), or null. */
export function apiKeyHeader(header: string | string[] | undefined): string | null {
  const value = typeof header === 'string' ? header.trim() : ''
  return value === '' || /\s/.test(value) ? null : value
}

export function bearerToken(header: string | undefined): string | null {
  if (!header) return null
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  return match?.[1] ?? null
}
