import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ERRORS, GatewayError, type ErrorCode } from '../../src/errors.js'

/** docs/errors.md's table: code → [status, types], as written there. */
function documented(): Map<string, [number, string[]]> {
  const text = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
  const rows = new Map<string, [number, string[]]>()
  for (const line of text.split('\n')) {
    const cells = line.split('|').map((c) => c.trim())
    const code = /^`([a-z_]+)`$/.exec(cells[1] ?? '')?.[1]
    if (code === undefined || !/^\d{3}$/.test(cells[2] ?? '')) continue
    expect(rows.has(code), `${code} is listed once`).toBe(false)
    rows.set(code, [Number(cells[2]), [...cells[3]!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!)])
  }
  return rows
}

describe('the error catalogue', () => {
  it('docs/errors.md lists every code with its status and types, and no other', () => {
    const doc = documented()
    expect([...doc.keys()].sort()).toEqual(Object.keys(ERRORS).sort())
    for (const [code, entry] of Object.entries(ERRORS)) expect(doc.get(code), code).toEqual([entry.status, [...entry.types]])
  })

  it('an error takes its status and first type from the catalogue, and another of its types when given', () => {
    const quota = new GatewayError('insufficient_quota', 'spent')
    expect([quota.statusCode, quota.type]).toEqual([429, 'insufficient_quota'])
    expect(new GatewayError('rate_limit_exceeded', 'x', { type: 'tokens' }).type).toBe('tokens')
    expect(new GatewayError('rate_limit_exceeded', 'x').type).toBe('requests')
    expect(new GatewayError('model_not_found', 'x', { param: 'model' }).toJSON()).toEqual({
      error: { message: 'x', type: 'invalid_request_error', param: 'model', code: 'model_not_found' },
    })
  })

  it('holds only statuses a client can act on by class: 4xx for the request, 5xx for the gateway or upstream', () => {
    for (const [code, { status }] of Object.entries(ERRORS) as [ErrorCode, { status: number }][]) {
      const upstreamOrGateway = /^(upstream_|stream_|store_|gateway_|internal_)/.test(code)
      if (code === 'upstream_keys_exhausted') expect(status).toBe(429)
      else expect(status >= 500, code).toBe(upstreamOrGateway)
    }
  })
})
