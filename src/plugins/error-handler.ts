import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify'
import { timeOwnAnswer } from '../context.js'
import { errorBody, ERRORS, GatewayError, openAIError, typeForStatus, type ErrorCode } from '../errors.js'

/**
 * The one error handler: every refusal leaves in OpenAI's envelope. Fastify's own errors (bad
 * JSON, body too large, unsupported media type) get a message a person can act on.
 */
export function registerErrorHandling(app: FastifyInstance, bodyLimitBytes: number): void {
  app.setErrorHandler((err: FastifyError | GatewayError, request, reply) => {
    timeOwnAnswer(request, reply)
    forgetBodyHeaders(reply)
    if (err instanceof GatewayError) {
      if (err.statusCode >= 500 && !err.expected) request.log.error({ err: err.cause ?? err, code: err.code }, err.message)
      return reply.code(err.statusCode).headers(err.headers).send(err.toJSON())
    }
    const status = err.statusCode ?? 500
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return reply
          .code(413)
          .send(errorBody('request_too_large', `The request body is larger than the gateway's limit of ${bodyLimitBytes} bytes.`))
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return reply.code(400).send(errorBody('invalid_json', 'The request body is empty; send a JSON object.'))
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return reply.code(400).send(errorBody('invalid_json', `We could not parse the JSON body of your request: ${err.message}`))
    }
    if (err instanceof SyntaxError || (status === 400 && /JSON/i.test(err.message))) {
      return reply.code(400).send(errorBody('invalid_json', `We could not parse the JSON body of your request: ${err.message}`))
    }
    if (status >= 500) {
      request.log.error({ err }, 'unhandled error')
      return reply.code(500).send(errorBody('internal_error', 'The gateway had an internal error.'))
    }
    // Fastify's own codes (FST_ERR_…) are its internals, not the gateway's API: only catalogued
    // codes reach a client.
    return reply.code(status).send(openAIError(err.message, typeForStatus(status)))
  })

  app.setNotFoundHandler((request, reply) => {
    timeOwnAnswer(request, reply)
    reply.code(404).send(errorBody('unknown_route', `Unknown route: ${request.method} ${request.url.split('?')[0]}`))
  })
}

/**
 * Headers set for an answer that will not be sent now: an error's body is JSON, whatever type
 * (an event stream, the upstream's) had been set before it failed.
 */
function forgetBodyHeaders(reply: FastifyReply): void {
  for (const name of ['content-type', 'content-length', 'cache-control', 'x-accel-buffering']) reply.removeHeader(name)
  reply.type('application/json; charset=utf-8')
}

/** What Node's HTTP parser refuses before Fastify sees a request, as OpenAI's envelope. */
const CLIENT_ERRORS: Record<string, [ErrorCode, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: ['request_timeout', 'The request did not arrive in time; the connection is closed.'],
  HPE_HEADER_OVERFLOW: ['headers_too_large', 'The request headers are larger than the gateway accepts.'],
}

/**
 * Fastify's clientErrorHandler: a request the parser refused (malformed, too slow, headers too
 * large) gets OpenAI's envelope, then the connection is closed. Node's own checks call it for
 * header and request timeouts.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [code, message] = CLIENT_ERRORS[err.code ?? ''] ?? ['invalid_request', 'The request is not valid HTTP.']
  const status = ERRORS[code].status
  // (A response already under way cannot be replaced: the connection is just closed.)
  const started = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true
  if (socket.writable && !started) {
    const body = JSON.stringify(errorBody(code, message))
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }
