import { describe, expect, it } from 'vitest'
import { bearerToken, generateClientKey, hashClientKey, keyHint, looksLikeClientKey, randomBase62, secretsEqual } from '../../src/keys.js'

describe('client keys', () => {
  it('are tg- and 43 base62 characters (256 bits), all different', () => {
    const keys = Array.from({ length: 200 }, generateClientKey)
    for (const key of keys) {
      expect(key).toMatch(/^tg-[0-9A-Za-z]{43}$/)
      expect(looksLikeClientKey(key)).toBe(true)
    }
    expect(new Set(keys).size).toBe(200)
  })

  it('use every base62 character, roughly evenly', () => {
    const counts = new Map<string, number>()
    for (const ch of randomBase62(62_000)) counts.set(ch, (counts.get(ch) ?? 0) + 1)
    expect(counts.size).toBe(62)
    for (const n of counts.values()) expect(n).toBeGreaterThan(700) // expected 1000 each
  })

  it('hash to SHA-256 hex, and hints show only the ends', () => {
    expect(hashClientKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    const key = generateClientKey()
    expect(keyHint(key)).toBe(`${key.slice(0, 7)}…${key.slice(-4)}`)
  })

  it('reject shapes that are not keys', () => {
    for (const v of ['', 'tg-', 'sk-abc', `tg-${'a'.repeat(42)}`, `xx-${'a'.repeat(43)}`]) expect(looksLikeClientKey(v)).toBe(false)
  })
})

describe('bearer tokens and secret comparison', () => {
  it('parses Authorization headers', () => {
    expect(bearerToken('Bearer abc')).toBe('abc')
    expect(bearerToken('bearer  abc ')).toBe('abc')
    expect(bearerToken('Basic abc')).toBeNull()
    expect(bearerToken('Bearer a b')).toBeNull()
    expect(bearerToken(undefined)).toBeNull()
  })

  it('compares secrets of any length', () => {
    expect(secretsEqual('same-secret', 'same-secret')).toBe(true)
    expect(secretsEqual('same-secret', 'same-secreT')).toBe(false)
    expect(secretsEqual('short', 'a-much-longer-secret')).toBe(false)
  })
})
