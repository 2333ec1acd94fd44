import { randomUUID } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Config } from '../config.js'
import { draining } from '../errors.js'
import { LazyRequestLogger } from '../logger.js'
import { clientErrorHandler, registerErrorHandling } from '../plugins/error-handler.js'
import { registerJsonBody } from '../plugins/json-body.js'
import { registerRequestLog } from '../plugins/request-log.js'

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
/** How long an idle client connection stays open (Fastify's default, kept on purpose: see below). */
const KEEP_ALIVE_MS = 72_000
const AWAITING_FIRST_REQUEST = Symbol('awaiting first request')

type RequestClosed = Parameters<typeof registerRequestLog>[1]

/**
 * The HTTP server and what every request gets before any route: a request id, timeouts and a cap
 * on connections, JSON bodies, OpenAI's error envelope, its log line (`closed` is told of each as
 * it closes), and a 503 while the gateway drains.
 */
export function createHttp(config: Config, logger: Logger, closed: RequestClosed): FastifyInstance {
  const app: FastifyInstance = Fastify({
    // pino's Logger and Fastify's base logger type differ only in typing, not at run time.
    loggerInstance: logger as FastifyBaseLogger,
    // Per-request children only when something logs through them (the request line does not).
    childLoggerFactory: (parent, bindings, options) =>
      new LazyRequestLogger(parent as Logger, bindings, options) as unknown as FastifyBaseLogger,
    // Our own onResponse hook writes the one line per request (plugins/request-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
    },
    // A request's headers and body must arrive within these (a response may then take as long as
    // the upstream does); they are checked every second, and idle sockets that never send a byte
    // are closed too. Fastify's own clientError answers are replaced by OpenAI's envelope.
    requestTimeout: config.guards.requestTimeoutMs,
    http: { headersTimeout: config.guards.headersTimeoutMs, connectionsCheckingInterval: 1_000 },
    clientErrorHandler,
    // Longer than a balancer keeps an idle connection (deploy/nginx.conf: 60 s), so the balancer,
    // not the gateway, ends it: a request sent on a connection the gateway is closing is lost, and
    // nginx answers a lost POST with a 502 rather than send it again.
    keepAliveTimeout: KEEP_ALIVE_MS,
    // Requests that arrive while the gateway drains get its own 503, in OpenAI's envelope (below):
    // Fastify's has a body of its own shape.
    return503OnClosing: false,
    // A hop count is valid at run time; Fastify's types leave numbers out.
    trustProxy: config.trustProxy as boolean | string,
  })

  // Beyond this many client connections, new ones are refused at once, so the gateway keeps the
  // file descriptors it needs for its upstreams and Redis.
  app.server.maxConnections = config.guards.maxConnections
  closeSilentConnections(app.server, config.guards.headersTimeoutMs)
  // Any content type is read as JSON; a body that is not JSON gets a 400 in OpenAI's envelope.
  registerJsonBody(app)
  registerErrorHandling(app, config.bodyLimitBytes)
  registerRequestLog(app, closed)
  // From the start of app.close(): new requests on open connections are refused, and their
  // connections closed, while the requests in flight finish.
  let closing = false
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
  app.addHook('onRequest', (_request, _reply, done) => done(closing ? draining() : undefined))
  return app
}

/**
 * A connection that sends no request within `ms` of opening (or stops sending one half-way) is
 * closed. Node's own header timeout only starts at a request's first byte, so sockets that never
 * send one would stay open for ever and use up the process's file descriptors. From the first
 * request on, Node's header, request and keep-alive timeouts take over.
 */
function closeSilentConnections(server: Server, ms: number): void {
  server.on('connection', (socket: Socket & { [AWAITING_FIRST_REQUEST]?: boolean }) => {
    // (With no request on the socket, Node's timeout handler destroys it.)
    socket.setTimeout(ms)
    socket[AWAITING_FIRST_REQUEST] = true
  })
  server.on('request', (request: IncomingMessage) => {
    const socket = request.socket as Socket & { [AWAITING_FIRST_REQUEST]?: boolean }
    if (socket[AWAITING_FIRST_REQUEST]) {
      socket[AWAITING_FIRST_REQUEST] = false
      socket.setTimeout(0)
    }
  })
}
