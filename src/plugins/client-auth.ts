import type { onRequestAsyncHookHandler } from 'fastify'
import { invalidApiKey, storeUnavailable } from '../errors.js'
import { bearerToken, hashClientKey, looksLikeClientKey } from '../keys.js'
import type { Store } from '../store/types.js'

/**
 * Authenticates a client key (`Authorization: Bearer tg-…`) against the store and puts its team
 * and key id on the request. Runs at onRequest, before the body is read. Messages never echo the
 * key.
 */
export function clientAuth(store: Store, now: () => number): onRequestAsyncHookHandler {
  return async (request) => {
    const token = bearerToken(request.headers.authorization)
    if (token === null) {
      throw invalidApiKey(
        "You didn't provide an API key. Send it as 'Authorization: Bearer tg-…' (the OpenAI clients do this for you).",
      )
    }
    if (!looksLikeClientKey(token)) throw invalidApiKey('Incorrect API key provided.')
    let principal
    try {
      principal = await store.authenticate(hashClientKey(token))
    } catch (err) {
      throw storeUnavailable(err)
    }
    if (principal === null) throw invalidApiKey('Incorrect API key provided, or the key has been revoked.')
    const { key } = principal
    if (key.expires_at !== null && Date.parse(key.expires_at) <= now()) {
      throw invalidApiKey('This API key has expired.')
    }
    request.tg.team = key.team
    request.tg.keyId = key.id
    request.principal = principal
  }
}
