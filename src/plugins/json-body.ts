import type { FastifyInstance, FastifyRequest } from 'fastify'

/**
 * Request bodies are JSON whatever their content type (curl -d sends form encoding by default).
 * Fastify's own parser (secure-json-parse, refusing `__proto__` and `constructor.prototype`)
 * scans every body with two regular expressions after parsing it; a body that holds neither word
 * nor a `\u` escape cannot carry them, so it takes plain JSON.parse. Anything else, and every
 * error, goes to Fastify's parser, so the errors stay Fastify's (and become 400s in OpenAI's
 * envelope).
 */
export function registerJsonBody(app: FastifyInstance): void {
  // Fastify's parser is the (request, body, done) kind; its type also allows a promise-returning one.
  const strict = app.getDefaultJsonParser('error', 'error') as (request: FastifyRequest, body: string, done: Done) => void
  const parse = (request: FastifyRequest, body: string, done: Done) => {
    // Kept for the proxy, which forwards the client's own bytes (see forwardBody).
    request.rawBody = body
    if (body.length > 0 && !body.includes('__proto__') && !body.includes('constructor') && !body.includes('\\u')) {
      let value: unknown
      try {
        value = JSON.parse(body)
      } catch {
        return strict(request, body, done)
      }
      return done(null, value)
    }
    return strict(request, body, done)
  }
  app.decorateRequest('rawBody', null)
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parse)
  app.addContentTypeParser('*', { parseAs: 'string' }, parse)
}

type Done = (err: Error | null, body?: unknown) => void
