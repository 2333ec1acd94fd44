import { GatewayError, modelNotFound } from '../errors.js'
import type { ResolvedModel } from '../upstream/router.js'
import type { ProxyOptions } from './flight.js'

/**
 * Step 2: the model. Its name resolves to one canonical name (limits, defaults, usage and metrics
 * see only that one) and to the upstream that serves it, which must have a key.
 */
export function resolveModel(opts: ProxyOptions, name: string): ResolvedModel {
  const resolved = opts.router.resolve(name)
  if (resolved === null) throw modelNotFound(name)
  const primary = opts.upstreams.get(resolved.upstream.name)
  if (!primary) throw modelNotFound(name)
  const keyEnv = primary.config.keyEnv
  if (keyEnv !== null && !primary.hasKeys) {
    throw new GatewayError(
      'upstream_not_configured',
      `The gateway has no API key for upstream '${primary.name}'; its operator must set ${keyEnv}.`,
      {
        headers: { 'x-should-retry': 'false' },
      },
    )
  }
  return resolved
}
