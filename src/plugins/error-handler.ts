import type { FastifyError, FastifyInstance } from 'fastify'
import { timeOwnAnswer } from '../context.js'
import { GatewayError, openAIError, typeForStatus } from '../errors.js'

/**
 * The one error handler: every refusal leaves in OpenAI's envelope. Fastify's own errors (bad
 * JSON, body too large, unsupported media type) get a message a person can act on.
 */
export function registerErrorHandling(app: FastifyInstance, bodyLimitBytes: number): void {
  app.setErrorHandler((err: FastifyError | GatewayError, request, reply) => {
    timeOwnAnswer(request, reply)
    if (err instanceof GatewayError) {
      if (err.statusCode >= 500 && !err.expected) request.log.error({ err: err.cause ?? err, code: err.code }, err.message)
      return reply.code(err.statusCode).headers(err.headers).send(err.toJSON())
    }
    const status = err.statusCode ?? 500
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return reply
          .code(413)
          .send(openAIError(`The request body is larger than the gateway's limit of ${bodyLimitBytes} bytes.`, 'invalid_request_error', 'request_too_large'))
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return reply.code(400).send(openAIError('The request body is empty; send a JSON object.', 'invalid_request_error', 'invalid_json'))
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return reply.code(400).send(openAIError(`We could not parse the JSON body of your request: ${err.message}`, 'invalid_request_error', 'invalid_json'))
    }
    if (err instanceof SyntaxError || (status === 400 && /JSON/i.test(err.message))) {
      return reply
        .code(400)
        .send(openAIError(`We could not parse the JSON body of your request: ${err.message}`, 'invalid_request_error', 'invalid_json'))
    }
    if (status >= 500) {
      request.log.error({ err }, 'unhandled error')
      return reply.code(500).send(openAIError('The gateway had an internal error.', 'server_error', 'internal_error'))
    }
    return reply.code(status).send(openAIError(err.message, typeForStatus(status), err.code ?? null))
  })

  app.setNotFoundHandler((request, reply) => {
    timeOwnAnswer(request, reply)
    reply
      .code(404)
      .send(openAIError(`Unknown route: ${request.method} ${request.url.split('?')[0]}`, 'invalid_request_error', 'unknown_route'))
  })
}
