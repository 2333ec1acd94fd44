import { mayUse } from '../access.js'
import { GatewayError, modelNotFound } from '../errors.js'
import type { Principal } from '../store/types.js'
import type { ResolvedModel } from '../upstream/router.js'
import type { ProxyOptions } from './flight.js'

/**
 * Step 2: the model. Its name resolves to one canonical name (limits, defaults, usage and metrics
 * see only that one) and to the upstream that serves it, which must have a key. The caller's team
 * and key must allow it (allowed_models), before any limit counts the request.
 */
export function resolveModel(opts: ProxyOptions, name: string, principal: Principal): ResolvedModel {
  const resolved = opts.router.resolve(name)
  if (resolved === null) throw modelNotFound(name)
  if (!mayUse(principal, resolved)) {
    throw new GatewayError(
      'model_not_allowed',
      `Your key may not use the model '${name}': it is not among the models allowed to its team or to the key.`,
      {
        param: 'model',
        headers: { 'x-should-retry': 'false' },
      },
    )
  }
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
