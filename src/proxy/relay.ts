import { Readable } from 'node:stream'
import type { FastifyReply } from 'fastify'
import { msSince } from '../context.js'
import { GatewayError } from '../errors.js'
import type { Adapter } from '../adapters/adapter.js'
import type { UsageTap } from '../stream/usage-tap.js'
import { AnswerTooLarge, readAll, readLimited, WholeBody, type StreamBody, type UpstreamClient } from '../upstream/client.js'
import { RETRYABLE_STATUS, retryAfterMs, type Dispatched } from '../upstream/dispatch.js'
import { mapTransportError, normaliseUpstreamError } from '../upstream/errors.js'
import { clientGone, type Flight } from './flight.js'

/**
 * Step 5: the answer. An upstream error becomes OpenAI's envelope (with only the upstream headers a
 * client needs, in the gateway's words); a whole answer is passed on unchanged; a stream goes out
 * as it arrives through the usage tap, byte for byte, its headers with its first event, ended
 * cleanly past the gateway's limits or when the upstream fails mid-way.
 */
export async function relay(f: Flight, { res, client }: Dispatched): Promise<FastifyReply> {
  if (res.statusCode >= 400 || res.statusCode === 202) return relayError(f, res, client)
  const contentType = contentTypeOf(res.headers['content-type'], f.ctx.stream)
  if (!contentType.startsWith('text/event-stream')) {
    // A whole JSON answer, passed on unchanged.
    let answer = await readWhole(f, res.body, client)
    f.meter.readBody(answer)
    firstByte(f)
    const adapter = f.endpoint.adapter
    if (adapter) answer = adaptedAnswer(f, adapter, answer)
    return f.reply.code(res.statusCode).header('content-type', contentType).header('content-length', answer.length).send(answer)
  }
  // An event stream that answers a request which did not ask for one was read whole (WholeBody):
  // it goes through the same tap as a stream, in one piece.
  const source = res.body instanceof WholeBody ? Readable.from([await readWhole(f, res.body, client)], { objectMode: false }) : res.body
  return relayStream(f, res.statusCode, contentType, source, client)
}

type Answer = Dispatched['res']

const callOf = (f: Flight) => ({ requestId: f.request.id, original: f.original })

/** A whole answer in the client's protocol (a body that is not a chat completion goes on as it is). */
function adaptedAnswer(f: Flight, adapter: Adapter, answer: Buffer): Buffer {
  try {
    return adapter.answer(answer, callOf(f))
  } catch (err) {
    f.request.log.warn({ err }, 'the upstream answer could not be translated; passed on as it came')
    return answer
  }
}

async function relayError(f: Flight, res: Answer, upstream: UpstreamClient): Promise<FastifyReply> {
  const { reply } = f
  f.meter.fail()
  let text: string
  try {
    text = await readLimited(res.body)
  } catch (err) {
    if (f.controller.aborted) throw clientGone()
    throw mapTransportError(upstream.name, err)
  }
  if (res.statusCode === 202) {
    // A queued request with no id to poll it by (dispatch.ts polls the others): never a 202.
    throw new GatewayError(
      'upstream_timeout',
      `Upstream '${upstream.name}' queued the request without an id to ask after it by; please retry.`,
    )
  }
  const normalised = normaliseUpstreamError(upstream.name, res.statusCode, text, (s) => upstream.scrub(s))
  if (normalised.credentialsRefused) {
    f.request.log.error(
      { upstream: upstream.name, upstream_status: res.statusCode },
      `upstream '${upstream.name}' refused the gateway's API key: check its keys`,
    )
  }
  // Of the upstream's headers only a readable retry-after goes on, in the gateway's own words.
  const retryAfter = retryAfterMs(res.headers['retry-after'], f.opts.now())
  if (retryAfter !== null) reply.header('retry-after', String(Math.min(MAX_RETRY_AFTER_S, Math.ceil(retryAfter / 1000))))
  // The gateway has spent its own retries on these (429, 5xx) already; a client's SDK retrying
  // them at once would multiply the upstream calls of one client call. The upstream's
  // retry-after, when there is one, says when trying again can help.
  if (normalised.credentialsRefused || RETRYABLE_STATUS.has(res.statusCode)) reply.header('x-should-retry', 'false')
  return reply.code(normalised.status).send(normalised.body)
}

/** An answer read whole, up to the gateway's limit (errors still become clean 502/504s). */
async function readWhole(f: Flight, body: Answer['body'], upstream: UpstreamClient): Promise<Buffer> {
  try {
    return await readAll(body, f.opts.guards.answerMaxBytes)
  } catch (err) {
    // (An answer past the limit was generated: its usage is estimated from the prompt.)
    if (!(err instanceof AnswerTooLarge)) f.meter.fail()
    if (f.controller.aborted) throw clientGone()
    throw mapTransportError(upstream.name, err)
  }
}

const firstByte = (f: Flight) =>
  f.opts.metrics.timeToFirstByte.series(f.endpoint.name, String(f.ctx.stream)).observe(msSince(f.ctx.started) / 1000)

/**
 * The stream goes out as it arrives: no decoding, no re-framing; the tap only reads (and in strip
 * mode removes the one usage event the gateway asked for), and ends the stream cleanly past the
 * gateway's limits. Plain pipe plus listeners: stream.pipeline costs an AbortController per request.
 */
async function relayStream(
  f: Flight,
  status: number,
  contentType: string,
  source: StreamBody | Readable,
  upstream: UpstreamClient,
): Promise<FastifyReply> {
  const { ctx, reply } = f
  const guards = f.opts.guards
  f.streaming = true
  f.opts.metrics.streamsOpen.inc()
  const tap = f.meter.tapStream(f.stripUsage, { maxBytes: guards.streamMaxBytes, maxEventBytes: guards.streamMaxEventBytes })
  const sourceFailed = (err: Error) => {
    // Before the first event (or with the client gone) the request fails whole: a plain 502/504.
    if (!tap.begun || f.controller.aborted) return void tap.destroy(err)
    // After it, the stream ends cleanly with an error event the SDKs raise as an APIError, and
    // counts as the upstream's failure (a stall is a 504), not as the client leaving.
    const failure = mapTransportError(upstream.name, err)
    tap.cut(failure.code, `${failure.message} The stream was ended.`)
  }
  source.once('error', sourceFailed)
  tap.onDone = () => (ctx.complete = true)
  tap.onCut = (code, countedAs) => {
    ctx.streamError = { status: countedAs, code }
    // The upstream is no longer read; its end is not an error of the stream's.
    source.off('error', sourceFailed)
    source.on('error', () => undefined)
    source.unpipe(tap)
    source.destroy()
    f.request.log.warn(
      { upstream: upstream.name, code },
      'the upstream stream failed or passed a limit of the gateway: ended with an error event',
    )
  }
  const tooLong = setTimeout(
    () => tap.cut('stream_too_long', `The upstream's stream ran past the gateway's limit of ${guards.streamMaxMs / 1000}s and was ended.`),
    guards.streamMaxMs,
  )
  tap.once('close', () => {
    clearTimeout(tooLong)
    if (source.destroyed) return
    // A stream whose [DONE] went out is read to its end, so its connection can serve again.
    if (ctx.complete) {
      source.unpipe(tap)
      source.on('error', () => undefined)
      source.resume()
    } else source.destroy()
  })
  source.pipe(tap)
  await firstEvent(f, tap, upstream)
  reply.code(status).header('content-type', contentType).header('cache-control', 'no-cache').header('x-accel-buffering', 'no')
  // (A 'data' listener makes the tap flow: attached with the pipe, in the same turn, or the
  // first event would go to it alone.)
  tap.once('data', () => firstByte(f))
  const adapter = f.endpoint.adapter
  if (!adapter) return reply.send(tap)
  // Another protocol: the tap's events (within the gateway's limits, usage read) translated as
  // they pass. The client leaving closes the translation, which closes the tap and the upstream.
  const translated = adapter.stream(callOf(f))
  translated.once('close', () => {
    if (!tap.destroyed && !tap.writableFinished) tap.destroy()
  })
  return reply.send(tap.pipe(translated))
}

/**
 * Headers go out with the first event: an upstream that fails before it gets the client a plain
 * 502/504, not a 200 stream cut off.
 */
async function firstEvent(f: Flight, tap: UsageTap, upstream: UpstreamClient): Promise<void> {
  try {
    await tap.started
  } catch (err) {
    f.meter.fail()
    if (f.controller.aborted) throw clientGone()
    throw mapTransportError(upstream.name, err)
  }
}

/** The longest retry-after passed on (seconds). */
const MAX_RETRY_AFTER_S = 86_400
const EVENT_STREAM = 'text/event-stream; charset=utf-8'
/** Upstream content types passed on as they are; any other is written in the gateway's words. */
const KNOWN_TYPES = new Set(['application/json', 'application/json; charset=utf-8', 'text/event-stream', EVENT_STREAM])

/**
 * The content type the client gets: the gateway's own spelling of the upstream's (whose header is
 * not copied: anything it holds would reach the client).
 */
function contentTypeOf(upstream: string | undefined, stream: boolean): string {
  if (upstream !== undefined && KNOWN_TYPES.has(upstream)) return upstream
  const type = upstream?.split(';', 1)[0]!.trim().toLowerCase()
  if (type === 'text/event-stream') return EVENT_STREAM
  if (type === 'text/plain') return 'text/plain; charset=utf-8'
  if (type === undefined || type === 'application/json')
    return stream && type === undefined ? EVENT_STREAM : 'application/json; charset=utf-8'
  return 'application/octet-stream'
}
