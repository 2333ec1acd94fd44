import type { FastifyInstance, FastifyRequest } from 'fastify'
import { invalidRequest } from '../errors.js'

/**
 * Request bodies are JSON whatever their content type (curl -d sends form encoding by default).
 * A body that is not JSON gets a 400 saying where it broke (the parser's own message), not
 * Fastify's "not valid JSON but content-type is set to 'application/json'", which is wrong for a
 * form-encoded body and says nothing of where.
 *
 * Fastify's parser (secure-json-parse, refusing `__proto__` and `constructor.prototype`) scans
 * every body with two regular expressions after parsing it; a body that holds neither word nor a
 * `\u` escape cannot carry them, so plain JSON.parse is enough. Any other body that parses goes
 * through Fastify's parser too, and is refused for the key it holds, by name.
 */
export function registerJsonBody(app: FastifyInstance): void {
  // Fastify's parser is the (request, body, done) kind; its type also allows a promise-returning one.
  const strict = app.getDefaultJsonParser('error', 'error') as (request: FastifyRequest, body: string, done: Done) => void
  const parse = (request: FastifyRequest, body: string, done: Done) => {
    // Kept for the proxy, which forwards the client's own bytes (see forwardBody).
    request.rawBody = body
    // (Fastify's own error for an empty body, which the error handler words.)
    if (body.length === 0) return strict(request, body, done)
    // Before parsing: a body nested deeper than any request needs would overflow the stack of
    // whatever walks it next (JSON.stringify of tools for a token estimate, a body rebuilt).
    if (nestingExceeds(body, MAX_DEPTH)) {
      return done(invalidRequest(`The JSON body of your request is nested more than ${MAX_DEPTH} levels deep.`, null, 'invalid_json'))
    }
    let value: unknown
    try {
      value = JSON.parse(body)
    } catch (err) {
      return done(invalidRequest(`We could not parse the JSON body of your request: ${(err as Error).message}.`, null, 'invalid_json'))
    }
    if (!body.includes('__proto__') && !body.includes('constructor') && !body.includes('\\u')) return done(null, value)
    return strict(request, body, (err, safe) =>
      err
        ? done(
            invalidRequest(
              "The request body holds a '__proto__' or 'constructor.prototype' key, which the gateway refuses.",
              null,
              'invalid_json',
            ),
          )
        : done(null, safe),
    )
  }
  app.decorateRequest('rawBody', null)
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parse)
  app.addContentTypeParser('*', { parseAs: 'string' }, parse)
}

type Done = (err: Error | null, body?: unknown) => void

/** Deeper than any OpenAI request (a JSON schema of tools or response_format included) needs. */
export const MAX_DEPTH = 128

/**
 * Whether the JSON text opens more than `max` arrays and objects inside one another (brackets in
 * strings do not count), in one pass over the text.
 */
export function nestingExceeds(text: string, max: number): boolean {
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x22) {
      // A string: on to its closing quote (one not escaped by an odd run of backslashes).
      for (;;) {
        i = text.indexOf('"', i + 1)
        if (i === -1) return false
        let b = i - 1
        while (text.charCodeAt(b) === 0x5c) b--
        if ((i - 1 - b) % 2 === 0) break
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) {
      depth--
    }
  }
  return false
}
