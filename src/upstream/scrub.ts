/**
 * Finds the gateway's upstream keys in text it is about to write (an error message built from the
 * upstream's answer), in any encoding an upstream might echo them in: as they are, percent-encoded
 * (any mix, either case), with JSON \u escapes, base64 (standard or URL-safe, at any of the three
 * alignments a key can have inside a longer base64 text) and hex.
 */

const REDACTED = '[redacted]'

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')

/** One character as itself, percent-encoded, or \u-escaped. */
function charPattern(ch: string): string {
  const hex = ch.charCodeAt(0).toString(16).padStart(2, '0')
  const alternatives = [escapeRegExp(ch), `%${hex}`]
  if (ch.charCodeAt(0) < 0x100) alternatives.push(`\\\\u00${hex}`)
  return `(?:${alternatives.join('|')})`
}

/** The base64 characters that only the key's own bytes decide, for a key starting `shift` bytes into a longer text. */
function base64Core(key: Buffer, shift: number): string {
  const encoded = Buffer.concat([Buffer.alloc(shift), key])
    .toString('base64')
    .replace(/=+$/, '')
  const first = Math.ceil((shift * 8) / 6)
  const last = Math.floor(((shift + key.length) * 8) / 6)
  return encoded.slice(first, last)
}

/** One regular expression for every encoding of every key (case-insensitive where the encoding is). */
export function secretPattern(keys: readonly string[]): { exact: RegExp; caseless: RegExp } | null {
  const exact: string[] = []
  const caseless: string[] = []
  for (const key of keys) {
    if (key.length < 8) continue // (no real key is this short, and a short one would match anywhere)
    const bytes = Buffer.from(key, 'utf8')
    exact.push([...key].map(charPattern).join(''))
    for (let shift = 0; shift < 3; shift++) {
      const core = base64Core(bytes, shift)
      exact.push(escapeRegExp(core))
      exact.push(escapeRegExp(core.replace(/\+/g, '-').replace(/\//g, '_')))
    }
    caseless.push(bytes.toString('hex'))
  }
  if (exact.length === 0) return null
  // Percent escapes' hex digits may be either case; the key's own characters may not.
  return {
    exact: new RegExp(
      exact.join('|').replace(/%([0-9a-f]{2})/g, (_m, h: string) => `%(?:${h}|${h.toUpperCase()})`),
      'g',
    ),
    caseless: new RegExp(caseless.join('|'), 'gi'),
  }
}

/** Replaces every encoding of the keys, and anything shaped like an NVIDIA key, with [redacted]. */
export function scrubSecrets(text: string, pattern: ReturnType<typeof secretPattern>): string {
  let out = text
  if (pattern !== null) out = out.replace(pattern.exact, REDACTED).replace(pattern.caseless, REDACTED)
  return out.replace(/nvapi-[A-Za-z0-9_-]+/g, 'nvapi-[redacted]')
}
